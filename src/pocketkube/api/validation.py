"""apimachinery's name and label validation: the vocabulary every kind's rules are written in.

Kubernetes keeps these in `pkg/util/validation` (DNS-1123/1035 names, qualified names, label
values, IANA port names) and `pkg/apis/meta/v1/validation` (label maps). They live in `api` rather
than `registry` because label selectors (api/selectors/labels.py) parse label keys and values
with the very same rules, and `api` imports nothing of ours. Messages match upstream word for
word, since kubectl users and e2e tests compare them; every function tolerates wrong JSON types
(a bad type is a message or a FieldError, never an exception: user input must not 500).
"""

from __future__ import annotations

import re
from typing import Any

from pocketkube.api.fields import FieldError, Path, invalid

_DNS1123_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN_FMT = _DNS1123_LABEL_FMT + "(\\." + _DNS1123_LABEL_FMT + ")*"
_DNS1035_LABEL_FMT = "[a-z]([-a-z0-9]*[a-z0-9])?"
_QUALIFIED_NAME_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_LABEL_VALUE_FMT = "(" + _QUALIFIED_NAME_FMT + ")?"

_DNS1123_LABEL_RE = re.compile(_DNS1123_LABEL_FMT)
_DNS1123_SUBDOMAIN_RE = re.compile(_DNS1123_SUBDOMAIN_FMT)
_DNS1035_LABEL_RE = re.compile(_DNS1035_LABEL_FMT)
_QUALIFIED_NAME_RE = re.compile(_QUALIFIED_NAME_FMT)
_LABEL_VALUE_RE = re.compile(_LABEL_VALUE_FMT)

_DNS1123_LABEL_MSG = ("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
                      "and must start and end with an alphanumeric character")
_DNS1123_SUBDOMAIN_MSG = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
                          "'-' or '.', and must start and end with an alphanumeric character")
_DNS1035_LABEL_MSG = ("a DNS-1035 label must consist of lower case alphanumeric characters or '-', "
                      "start with an alphabetic character, and end with an alphanumeric character")
_QUALIFIED_NAME_MSG = ("must consist of alphanumeric characters, '-', '_' or '.', "
                       "and must start and end with an alphanumeric character")
_LABEL_VALUE_MSG = ("a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
                    "and must start and end with an alphanumeric character")


def max_len_error(length: int) -> str:
    return f"must be no more than {length} characters"


def empty_error() -> str:
    return "must be non-empty"


def regex_error(msg: str, fmt: str, *examples: str) -> str:
    """apimachinery's RegexError: note the doubled space between examples, kept for fidelity."""
    s = msg + " (e.g. "
    for i, example in enumerate(examples):
        if i > 0:
            s += " or "
        s += f"'{example}', "
    return s + f"regex used for validation is '{fmt}')"


def type_name(value: Any) -> str:
    """JSON type name of a decoded value, for wrong-type messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def json_type(value: Any) -> str:
    """The kind Go's encoding/json names in its errors (object, array, string, bool, number, null)."""
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    return "null"


def go_unmarshal_error(value: Any, go_type: str) -> str:
    """encoding/json's UnmarshalTypeError text: decoding `value` into a Go value of `go_type`."""
    return f"json: cannot unmarshal {json_type(value)} into Go value of type {go_type}"


def wrong_type(path: Path | str, value: Any, expected: str) -> FieldError:
    """A field whose JSON type is wrong (upstream this is a decode error; we report it on the field)."""
    return invalid(path, value, f"must be of type {expected}, not {type_name(value)}")


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def dns1123_label_errors(value: str) -> list[str]:
    if not isinstance(value, str):
        return [f"must be a string, not {type_name(value)}"]
    errs = []
    if len(value) > 63:
        errs.append(max_len_error(63))
    if not _DNS1123_LABEL_RE.fullmatch(value):
        if _DNS1123_SUBDOMAIN_RE.fullmatch(value):
            # A valid subdomain that is not a label: the only problem left is the dots.
            errs.append("must not contain dots")
        else:
            errs.append(regex_error(_DNS1123_LABEL_MSG, _DNS1123_LABEL_FMT, "my-name", "123-abc"))
    return errs


def dns1123_subdomain_errors(value: str) -> list[str]:
    if not isinstance(value, str):
        return [f"must be a string, not {type_name(value)}"]
    errs = []
    if len(value) > 253:
        errs.append(max_len_error(253))
    if not _DNS1123_SUBDOMAIN_RE.fullmatch(value):
        errs.append(regex_error(_DNS1123_SUBDOMAIN_MSG, _DNS1123_SUBDOMAIN_FMT, "example.com"))
    return errs


def dns1035_label_errors(value: str) -> list[str]:
    if not isinstance(value, str):
        return [f"must be a string, not {type_name(value)}"]
    errs = []
    if len(value) > 63:
        errs.append(max_len_error(63))
    if not _DNS1035_LABEL_RE.fullmatch(value):
        errs.append(regex_error(_DNS1035_LABEL_MSG, _DNS1035_LABEL_FMT, "my-name", "abc-123"))
    return errs


def qualified_name_errors(value: Any) -> list[str]:
    """IsQualifiedName: `[prefix/]name`, prefix a DNS-1123 subdomain, name at most 63 characters."""
    if not isinstance(value, str):
        return [f"must be a string, not {type_name(value)}"]
    parts = value.split("/")
    errs: list[str] = []
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            errs.append("prefix part " + empty_error())
        else:
            errs.extend("prefix part " + m for m in dns1123_subdomain_errors(prefix))
    else:
        return ["a qualified name " + regex_error(_QUALIFIED_NAME_MSG, _QUALIFIED_NAME_FMT, "MyName", "my.name",
                                                  "123-abc")
                + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"]
    if not name:
        errs.append("name part " + empty_error())
    elif len(name) > 63:
        errs.append("name part " + max_len_error(63))
    if not _QUALIFIED_NAME_RE.fullmatch(name):
        errs.append("name part " + regex_error(_QUALIFIED_NAME_MSG, _QUALIFIED_NAME_FMT, "MyName", "my.name",
                                               "123-abc"))
    return errs


def label_value_errors(value: Any) -> list[str]:
    if not isinstance(value, str):
        return [f"must be a string, not {type_name(value)}"]
    errs = []
    if len(value) > 63:
        errs.append(max_len_error(63))
    if not _LABEL_VALUE_RE.fullmatch(value):
        errs.append(regex_error(_LABEL_VALUE_MSG, _LABEL_VALUE_FMT, "MyValue", "my_value", "12345"))
    return errs


def validate_labels(labels: Any, path: Path) -> list[FieldError]:
    """Keys must be qualified names, values label values; errors sit on the map's own path."""
    if labels is None:
        return []
    if not isinstance(labels, dict):
        return [wrong_type(path, labels, "object")]
    errs: list[FieldError] = []
    for key, value in labels.items():
        errs.extend(invalid(path, key, m) for m in qualified_name_errors(key))
        if not isinstance(value, str):
            errs.append(wrong_type(path.key(str(key)), value, "string"))
            continue
        errs.extend(invalid(path, value, m) for m in label_value_errors(value))
    return errs


def port_name_errors(name: str) -> list[str]:
    """IsValidPortName (IANA_SVC_NAME)."""
    errs = []
    if len(name) > 15:
        errs.append("must be no more than 15 characters")
    if not re.fullmatch(r"[-a-z0-9]+", name):
        errs.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    if not re.search(r"[a-z]", name):
        errs.append("must contain at least one letter (a-z)")
    if "--" in name:
        errs.append("must not contain consecutive hyphens")
    if name.startswith("-") or name.endswith("-"):
        errs.append("must not begin or end with a hyphen")
    return errs
