"""Label and field selectors: parsing (with Kubernetes' error messages) and matching.

Label selectors follow apimachinery's pkg/labels grammar (`a=b`, `a==b`, `a!=b`, `a in (x,y)`,
`a notin (x)`, `a`, `!a`, `a>1`, `a<1`, comma = AND) and metav1.LabelSelector (matchLabels +
matchExpressions). Field selectors follow pkg/fields (`=`, `==`, `!=`, backslash escapes) with the
per-kind field labels the apiserver accepts.
"""

from __future__ import annotations

from collections.abc import Callable
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


# ---------------------------------------------------------------------------------------------
# Label selectors
# ---------------------------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------------------------
# Field selectors
# ---------------------------------------------------------------------------------------------

def _meta(obj: dict, key: str) -> Any:
    meta = obj.get("metadata")
    return meta.get(key) if isinstance(meta, dict) else None


def _at(obj: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def _pod_ip(obj: dict) -> Any:
    ips = _at(obj, "status", "podIPs")
    if isinstance(ips, list) and ips and isinstance(ips[0], dict):
        return ips[0].get("ip")
    return _at(obj, "status", "podIP")


_Accessor = Callable[[dict], Any]


def _involved(key: str) -> _Accessor:
    return lambda o: _at(o, "involvedObject", key)
_NAME: dict[str, _Accessor] = {"metadata.name": lambda o: _meta(o, "name")}
_NAMESPACED: dict[str, _Accessor] = {**_NAME, "metadata.namespace": lambda o: _meta(o, "namespace")}

# Kinds with their own field label conversion upstream; others accept only name and namespace.
_FIELDS: dict[str, dict[str, _Accessor]] = {
    "Pod": {
        **_NAMESPACED,
        "spec.nodeName": lambda o: _at(o, "spec", "nodeName"),
        "spec.restartPolicy": lambda o: _at(o, "spec", "restartPolicy"),
        "spec.schedulerName": lambda o: _at(o, "spec", "schedulerName"),
        "spec.serviceAccountName": lambda o: _at(o, "spec", "serviceAccountName"),
        "spec.hostNetwork": lambda o: bool(_at(o, "spec", "hostNetwork")),
        "status.phase": lambda o: _at(o, "status", "phase"),
        "status.podIP": _pod_ip,
        "status.podIPs": _pod_ip,
        "status.nominatedNodeName": lambda o: _at(o, "status", "nominatedNodeName"),
    },
    "Node": {**_NAME, "spec.unschedulable": lambda o: bool(_at(o, "spec", "unschedulable"))},
    "Event": {
        **_NAMESPACED,
        **{f"involvedObject.{k}": _involved(k)
           for k in ("kind", "namespace", "name", "uid", "apiVersion", "resourceVersion", "fieldPath")},
        "reason": lambda o: o.get("reason"),
        "reportingComponent": lambda o: o.get("reportingComponent"),
        "source": lambda o: _at(o, "source", "component"),
        "type": lambda o: o.get("type"),
    },
    "Namespace": {**_NAME, "status.phase": lambda o: _at(o, "status", "phase")},
    "Service": {
        **_NAMESPACED,
        "spec.clusterIP": lambda o: _at(o, "spec", "clusterIP"),
        "spec.type": lambda o: _at(o, "spec", "type"),
    },
}
_FIELD_ALIASES = {("Pod", "spec.host"): "spec.nodeName"}


def _field_string(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _split_terms(s: str) -> list[str]:
    """Split on commas that are not backslash-escaped."""
    terms, start, escaped = [], 0, False
    for i, ch in enumerate(s):
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == ",":
            terms.append(s[start:i])
            start = i + 1
    terms.append(s[start:])
    return terms


def _split_term(term: str) -> tuple[str, str, str] | None:
    for i in range(len(term)):
        for op in ("!=", "==", "="):
            if term.startswith(op, i):
                return term[:i], op, term[i + len(op):]
    return None


def _unescape(value: str) -> str:
    out, escaped = [], False
    for ch in value:
        if escaped:
            if ch not in "\\,=":
                raise ValueError(f"invalid field selector: invalid escape sequence: \\{ch}")
            out.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch in ",=":
            raise ValueError(f"invalid field selector: unescaped character in value: {ord(ch)}")
        else:
            out.append(ch)
    if escaped:
        raise ValueError("invalid field selector: invalid escape sequence: \\")
    return "".join(out)


class FieldSelector:
    """Terms (field, op, value) with op "=" or "!=", ANDed, for one kind's field labels."""

    def __init__(self, kind: str, requirements: list[tuple[str, str, str]]) -> None:
        self.kind = kind
        self.requirements = requirements
        self._accessors = _FIELDS.get(kind, _NAMESPACED)

    @classmethod
    def parse(cls, s: str, kind: str) -> FieldSelector:
        """Parse `?fieldSelector=`; ValueError with Kubernetes' message on bad syntax or field label."""
        terms = sorted(t for t in _split_terms(s) if t) if s else []
        parsed: list[tuple[str, str, str]] = []
        for term in terms:
            split = _split_term(term)
            if split is None:
                raise ValueError(f"invalid selector: '{s}'; can't understand '{term}'")
            field, op, value = split
            parsed.append((field, "!=" if op == "!=" else "=", _unescape(value)))
        return cls(kind, [(cls._convert(kind, f), op, v) for f, op, v in parsed])

    @staticmethod
    def _convert(kind: str, field: str) -> str:
        field = _FIELD_ALIASES.get((kind, field), field)
        if kind in _FIELDS:
            if field not in _FIELDS[kind]:
                raise ValueError(f"field label not supported: {field}")
        elif field not in _NAMESPACED:
            raise ValueError(f'"{field}" is not a known field selector: only "metadata.name", "metadata.namespace"')
        return field

    @property
    def empty(self) -> bool:
        return not self.requirements

    def matches(self, obj: dict) -> bool:
        for field, op, value in self.requirements:
            actual = _field_string(self._accessors[field](obj))
            if (actual == value) != (op == "="):
                return False
        return True

    def __str__(self) -> str:
        return ",".join(f"{f}{op}{v}" for f, op, v in self.requirements)
