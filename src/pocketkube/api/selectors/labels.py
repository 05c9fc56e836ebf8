"""Label selectors: apimachinery's pkg/labels grammar, metav1.LabelSelector, matching and validation.

`LabelSelector.parse` reads the `?labelSelector=` syntax (`a=b`, `a==b`, `a!=b`, `a in (x,y)`,
`a notin (x)`, `a`, `!a`, `a>1`, `a<1`, comma = AND) with a lexer and parser that fail with
Kubernetes' exact messages; `LabelSelector.from_dict` reads a metav1.LabelSelector (matchLabels +
matchExpressions). Both yield the same Requirements, which match label maps and print in
canonical form (the text `kubectl get -o wide` shows). Keys and values are checked with the name
rules of api/validation.py, the same ones object validation uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pocketkube.api.fields import FieldError, Path, forbidden, invalid, required
from pocketkube.api.validation import (
    label_value_errors,
    qualified_name_errors,
    validate_labels,
    wrong_type,
)

_SPECIAL = set("=!(),><")
_WHITESPACE = set(" \t\r\n")
# Multi-character operators the lexer recognises after a special symbol.
_SYMBOLS = {")", ",", "!", "==", "=", ">", "<", "!=", "("}
_BINARY_OPERATORS = "in, notin, =, ==, !=, gt, lt"
_PRINTED_OPERATORS = {"gt": ">", "lt": "<"}
_SET_OPERATORS = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}


@dataclass(frozen=True)
class Requirement:
    key: str
    operator: str  # "=", "==", "!=", "in", "notin", "exists", "!", "gt", "lt"
    values: tuple[str, ...] = ()

    def matches(self, labels: dict) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        if self.operator in ("=", "==", "in"):
            return present and value in self.values
        if self.operator in ("!=", "notin"):
            return not present or value not in self.values
        if self.operator == "exists":
            return present
        if self.operator == "!":
            return not present
        return present and _compare(value, self.operator, self.values[0])

    def __str__(self) -> str:
        if self.operator == "exists":
            return self.key
        if self.operator == "!":
            return "!" + self.key
        # Set semantics: a matchExpressions list may repeat a value; it is printed once.
        values = ",".join(sorted(set(self.values)))
        if self.operator in ("in", "notin"):
            return f"{self.key} {self.operator} ({values})"
        return f"{self.key}{_PRINTED_OPERATORS.get(self.operator, self.operator)}{values}"


def _compare(label_value: Any, operator: str, bound: str) -> bool:
    try:
        left, right = int(label_value), int(bound)
    except (TypeError, ValueError):
        return False
    return left > right if operator == "gt" else left < right


def _format_error(path: str, body: str) -> str:
    """field.Error.Error() keeps the `: ` even when the path is empty, as upstream does."""
    return f"{path}: {body}"


def _requirement_errors(key: str, operator: str, values: list[str]) -> list[str]:
    """NewRequirement's checks, as the lines of its aggregated error."""
    errs: list[str] = []
    key_errors = qualified_name_errors(key)
    if key_errors:
        errs.append(_format_error("key", invalid("", key, "; ".join(key_errors)).body()))
    count_rules = {
        "in": (lambda n: n > 0, "for 'in', 'notin' operators, values set can't be empty"),
        "notin": (lambda n: n > 0, "for 'in', 'notin' operators, values set can't be empty"),
        "=": (lambda n: n == 1, "exact-match compatibility requires one single value"),
        "==": (lambda n: n == 1, "exact-match compatibility requires one single value"),
        "!=": (lambda n: n == 1, "exact-match compatibility requires one single value"),
        "exists": (lambda n: n == 0, "values set must be empty for exists and does not exist"),
        "!": (lambda n: n == 0, "values set must be empty for exists and does not exist"),
        "gt": (lambda n: n == 1, "for 'Gt', 'Lt' operators, exactly one value is required"),
        "lt": (lambda n: n == 1, "for 'Gt', 'Lt' operators, exactly one value is required"),
    }
    ok, message = count_rules[operator]
    if not ok(len(values)):
        errs.append(_format_error("values", invalid("", values, message).body()))
    if operator in ("gt", "lt"):
        for i, v in enumerate(values):
            if not _is_go_int(v):
                errs.append(_format_error(f"values[{i}]",
                                          invalid("", v, "for 'Gt', 'Lt' operators, the value must be an integer").body()))
    for i, v in enumerate(values):
        messages = label_value_errors(v)
        if messages:
            errs.append(_format_error(f"values[{i}][{key}]", invalid("", v, "; ".join(messages)).body()))
    return errs


def _is_go_int(s: str) -> bool:
    digits = s[1:] if s[:1] in ("+", "-") else s
    return digits.isdigit() and digits.isascii() and -(2**63) <= int(s) < 2**63


def _aggregate(messages: list[str]) -> str:
    return messages[0] if len(messages) == 1 else "[" + ", ".join(messages) + "]"


def _lex(s: str) -> list[tuple[str, str]]:
    """Tokens as (kind, literal); kind is "id", "end", "error" or the symbol/keyword itself."""
    tokens: list[tuple[str, str]] = []
    i, n = 0, len(s)
    while True:
        while i < n and s[i] in _WHITESPACE:
            i += 1
        if i >= n:
            tokens.append(("end", ""))
            return tokens
        if s[i] in _SPECIAL:
            buffer, last, last_end = "", "", i
            j = i
            while j < n and s[j] in _SPECIAL:
                buffer += s[j]
                j += 1
                if buffer in _SYMBOLS:
                    last, last_end = buffer, j
                elif last:
                    break
            if not last:
                tokens.append(("error", f"error expected: keyword found '{buffer}'"))
                i = j
                continue
            tokens.append((last, last))
            i = last_end
            continue
        j = i
        while j < n and s[j] not in _SPECIAL and s[j] not in _WHITESPACE:
            j += 1
        word = s[i:j]
        tokens.append((word if word in ("in", "notin") else "id", word))
        i = j


class _Parser:
    def __init__(self, s: str) -> None:
        self.tokens = _lex(s)
        self.pos = 0

    def peek(self, values_context: bool = True) -> tuple[str, str]:
        return self._as_context(self.tokens[self.pos], values_context)

    def take(self, values_context: bool = True) -> tuple[str, str]:
        token = self.tokens[self.pos]
        self.pos += 1
        return self._as_context(token, values_context)

    @staticmethod
    def _as_context(token: tuple[str, str], values_context: bool) -> tuple[str, str]:
        # `in` and `notin` are plain identifiers where a key or value is expected.
        if values_context and token[0] in ("in", "notin"):
            return "id", token[1]
        return token

    def parse(self) -> list[Requirement]:
        requirements: list[Requirement] = []
        while True:
            kind, literal = self.peek()
            if kind == "end":
                return requirements
            if kind not in ("id", "!"):
                raise ValueError(f"found '{literal}', expected: !, identifier, or 'end of string'")
            try:
                requirements.append(self.requirement())
            except ValueError as e:
                raise ValueError(f"unable to parse requirement: {e}") from None
            kind, literal = self.take()
            if kind == "end":
                return requirements
            if kind != ",":
                raise ValueError(f"found '{literal}', expected: ',' or 'end of string'")
            kind, literal = self.peek()
            if kind not in ("id", "!"):
                raise ValueError(f"found '{literal}', expected: identifier after ','")

    def requirement(self) -> Requirement:
        negated = False
        kind, key = self.take()
        if kind == "!":
            negated = True
            kind, key = self.take()
        if kind != "id":
            raise ValueError(f"found '{key}', expected: identifier")
        key_errors = qualified_name_errors(key)
        if key_errors:
            raise ValueError(_format_error("", invalid("", key, "; ".join(key_errors)).body()))
        if negated:
            # Upstream returns at once; a following operator then fails as "expected: ','".
            return _new_requirement(key, "!", [])
        if self.peek()[0] in ("end", ","):
            return _new_requirement(key, "exists", [])
        operator = self.operator()
        values = self.set_values() if operator in ("in", "notin") else self.exact_value()
        return _new_requirement(key, operator, sorted(set(values)))

    def operator(self) -> str:
        kind, literal = self.take(values_context=False)
        operators = {"in": "in", "notin": "notin", "=": "=", "==": "==", "!=": "!=", ">": "gt", "<": "lt"}
        if kind not in operators:
            raise ValueError(f"found '{literal}', expected: {_BINARY_OPERATORS}")
        return operators[kind]

    def set_values(self) -> list[str]:
        kind, literal = self.take()
        if kind != "(":
            raise ValueError(f"found '{literal}' expected: '('")
        kind, literal = self.peek()
        if kind == ")":
            self.take()
            return [""]
        if kind not in ("id", ","):
            raise ValueError(f"found '{literal}', expected: ',', ')' or identifier")
        values = self.identifiers()
        if self.take()[0] != ")":
            raise ValueError(f"found '{literal}', expected: ')'")
        return values

    def identifiers(self) -> list[str]:
        values: list[str] = []
        while True:
            kind, literal = self.take()
            if kind == "id":
                values.append(literal)
                next_kind, next_literal = self.peek()
                if next_kind == ",":
                    continue
                if next_kind == ")":
                    return values
                raise ValueError(f"found '{next_literal}', expected: ',' or ')'")
            if kind == ",":
                if not values:
                    values.append("")
                next_kind, _ = self.peek()
                if next_kind == ")":
                    values.append("")
                    return values
                if next_kind == ",":
                    self.take()
                    values.append("")
                continue
            raise ValueError(f"found '{literal}', expected: ',', or identifier")

    def exact_value(self) -> list[str]:
        if self.peek()[0] in ("end", ","):
            return [""]
        kind, literal = self.take()
        if kind == "id":
            return [literal]
        raise ValueError(f"found '{literal}', expected: identifier")


def _new_requirement(key: str, operator: str, values: list[str]) -> Requirement:
    errs = _requirement_errors(key, operator, values)
    if errs:
        raise ValueError(_aggregate(errs))
    return Requirement(key, operator, tuple(values))


class LabelSelector:
    """A conjunction of requirements. `LabelSelector.nothing()` (a nil metav1 selector) matches nothing."""

    def __init__(self, requirements: list[Requirement], matches_nothing: bool = False) -> None:
        self.requirements = sorted(requirements, key=lambda r: r.key)
        self._nothing = matches_nothing

    @classmethod
    def parse(cls, s: str) -> LabelSelector:
        """Parse `?labelSelector=` syntax; ValueError carries Kubernetes' message."""
        return cls(_Parser(s).parse())

    @classmethod
    def nothing(cls) -> LabelSelector:
        return cls([], matches_nothing=True)

    @classmethod
    def from_dict(cls, d: dict | None) -> LabelSelector:
        """LabelSelectorAsSelector: None matches nothing, {} everything; ValueError when invalid."""
        if d is None:
            return cls.nothing()
        if not _well_shaped(d):
            raise ValueError("invalid label selector")
        requirements = [_new_requirement(k, "=", [v]) for k, v in (d.get("matchLabels") or {}).items()]
        for expr in d.get("matchExpressions") or []:
            operator = expr.get("operator")
            if not isinstance(operator, str) or operator not in _SET_OPERATORS:
                raise ValueError(f'"{operator}" is not a valid label selector operator')
            requirements.append(_new_requirement(expr.get("key") or "", _SET_OPERATORS[operator],
                                                 list(expr.get("values") or [])))
        return cls(requirements)

    @property
    def empty(self) -> bool:
        """True when the selector does not restrict anything (a `nothing` selector is not empty)."""
        return not self.requirements and not self._nothing

    def matches(self, labels: dict | None) -> bool:
        if self._nothing:
            return False
        labels = labels if isinstance(labels, dict) else {}
        return all(r.matches(labels) for r in self.requirements)

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)

    def __repr__(self) -> str:
        return f"LabelSelector({str(self)!r})"


def _well_shaped(d: Any) -> bool:
    """Whether a metav1.LabelSelector dict has the JSON types its fields require."""
    if not isinstance(d, dict):
        return False
    labels, expressions = d.get("matchLabels") or {}, d.get("matchExpressions") or []
    if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
        return False
    if not isinstance(expressions, list):
        return False
    return all(isinstance(e, dict) and isinstance(e.get("key") or "", str) and isinstance(e.get("values") or [], list)
               and all(isinstance(v, str) for v in e.get("values") or []) for e in expressions)


def selector_to_string(match_labels: dict | None) -> str:
    """`a=b,c=d`, keys sorted: how kubectl and the apiserver print a matchLabels map."""
    if not isinstance(match_labels, dict):
        return ""
    return ",".join(f"{k}={match_labels[k]}" for k in sorted(match_labels))


def validate_label_selector(selector: Any, path: Path) -> list[FieldError]:
    """ValidateLabelSelector for a metav1.LabelSelector dict (None is valid: nothing to check)."""
    if selector is None:
        return []
    if not isinstance(selector, dict):
        return [wrong_type(path, selector, "object")]
    errs = validate_labels(selector.get("matchLabels"), path.child("matchLabels"))
    expressions = selector.get("matchExpressions")
    if expressions is None:
        return errs
    if not isinstance(expressions, list):
        return errs + [wrong_type(path.child("matchExpressions"), expressions, "array")]
    for i, expr in enumerate(expressions):
        epath = path.child("matchExpressions").index(i)
        if not isinstance(expr, dict):
            errs.append(wrong_type(epath, expr, "object"))
            continue
        errs.extend(_expression_errors(expr, epath))
    return errs


def _expression_errors(expr: dict, path: Path) -> list[FieldError]:
    errs: list[FieldError] = []
    values = expr.get("values")
    if values is not None and not isinstance(values, list):
        errs.append(wrong_type(path.child("values"), values, "array"))
        values = []
    values = values or []
    operator = expr.get("operator")
    if operator in ("In", "NotIn"):
        if not values:
            errs.append(required(path.child("values"), "must be specified when `operator` is 'In' or 'NotIn'"))
    elif operator in ("Exists", "DoesNotExist"):
        if values:
            errs.append(forbidden(path.child("values"),
                                  "may not be specified when `operator` is 'Exists' or 'DoesNotExist'"))
    else:
        errs.append(invalid(path.child("operator"), operator if operator is not None else "",
                            "not a valid selector operator"))
    key = expr.get("key")
    key = key if key is not None else ""
    errs.extend(invalid(path.child("key"), key, m) for m in qualified_name_errors(key))
    for i, value in enumerate(values):
        errs.extend(invalid(path.child("values").index(i), value, m) for m in label_value_errors(value))
    return errs
