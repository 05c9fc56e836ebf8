"""ConfigMap, Secret and ServiceAccount: defaulting and validation worded as upstream's
pkg/apis/core/validation (ValidateConfigMap, ValidateSecret, ValidateServiceAccount and their
updates) and the Secret conversion that folds `stringData` into `data`.

Secret `data` and ConfigMap `binaryData` hold base64 in JSON (Go's []byte). Upstream's JSON
decoder rejects bad base64 with a 400; here the value reaches validation and is a 422 on the
exact key, which says more to the user.
"""

from __future__ import annotations

import base64
import binascii
import re

import orjson

from pocketkube.api.fields import FieldError, Path, forbidden, invalid, required, too_long
from pocketkube.api.validation import (
    dns1123_subdomain_errors,
    go_unmarshal_error,
    max_len_error,
    regex_error,
    wrong_type,
)
from pocketkube.registry.strategy import Strategy
from pocketkube.registry.validation import (
    IMMUTABLE,
    validate_object_meta,
    validate_object_meta_update,
)

__all__ = ["MAX_SIZE", "SECRET_TYPES", "b64_errors", "config_map_key_errors", "configmap_strategy",
           "secret_strategy", "serviceaccount_strategy"]

MAX_SIZE = 1024 * 1024  # core.MaxSecretSize, also ConfigMaps' limit
IMMUTABLE_WHEN_SET = "field is immutable when `immutable` is set"
REDACTED = "<secret contents redacted>"
_KEY_RE = re.compile(r"[-._a-zA-Z0-9]+")
_KEY_FMT = "[-._a-zA-Z0-9]+"
_KEY_MSG = "a valid config key must consist of alphanumeric characters, '-', '_' or '.'"

# Secret types and the keys each requires (pkg/apis/core/types.go).
OPAQUE = "Opaque"
SA_TOKEN = "kubernetes.io/service-account-token"
DOCKERCFG = "kubernetes.io/dockercfg"
DOCKERCONFIGJSON = "kubernetes.io/dockerconfigjson"
BASIC_AUTH = "kubernetes.io/basic-auth"
SSH_AUTH = "kubernetes.io/ssh-auth"
TLS = "kubernetes.io/tls"
BOOTSTRAP_TOKEN = "bootstrap.kubernetes.io/token"
SECRET_TYPES = (OPAQUE, SA_TOKEN, DOCKERCFG, DOCKERCONFIGJSON, BASIC_AUTH, SSH_AUTH, TLS, BOOTSTRAP_TOKEN)
SA_NAME_ANNOTATION = "kubernetes.io/service-account.name"


# ---- shared pieces ---------------------------------------------------------------------------

def config_map_key_errors(key: str) -> list[str]:
    """validation.IsConfigMapKey (also the rule for Secret keys)."""
    errs: list[str] = []
    if len(key) > 253:
        errs.append(max_len_error(253))
    if not _KEY_RE.fullmatch(key):
        errs.append(regex_error(_KEY_MSG, _KEY_FMT, "key.name", "KEY_NAME", "key-name"))
    if key == ".":
        errs.append("must not be '.'")
    elif key == "..":
        errs.append("must not be '..'")
    elif key.startswith(".."):
        errs.append("must not start with '..'")
    return errs


_B64_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")


def b64_errors(value: str) -> str | None:
    """Go's encoding/base64 StdEncoding error for `value`, as decoding a JSON []byte reports it
    (newlines are ignored, padding is required)."""
    text = value.replace("\r", "").replace("\n", "")
    try:
        base64.b64decode(text.encode(), validate=True)
        return None
    except (binascii.Error, ValueError):
        pass
    for i, ch in enumerate(text):
        if ch == "=":
            if text[i:] not in ("=", "==") or (len(text)) % 4:
                return f"illegal base64 data at input byte {i}"
            break
        if ch not in _B64_CHARS:
            return f"illegal base64 data at input byte {i}"
    return f"illegal base64 data at input byte {len(text) // 4 * 4}"


def _decoded(value: str) -> bytes:
    return base64.b64decode(value.replace("\r", "").replace("\n", "").encode())


def _immutable_flag(obj: dict, errs: list[FieldError]) -> bool | None:
    value = obj.get("immutable")
    if value is not None and not isinstance(value, bool):
        errs.append(wrong_type(Path("immutable"), value, "boolean"))
        return None
    return value


def _string_map(obj: dict, key: str, errs: list[FieldError]) -> dict[str, str]:
    """obj[key] as {str: str}; other types are reported and left out."""
    value = obj.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        errs.append(wrong_type(Path(key), value, "object"))
        return {}
    out: dict[str, str] = {}
    for k, v in value.items():
        if not isinstance(v, str):
            errs.append(wrong_type(Path(key).key(k), v, "string"))
        else:
            out[k] = v
    return out


def _bytes_map(obj: dict, key: str, errs: list[FieldError], redact: bool) -> dict[str, bytes]:
    """obj[key] (base64 strings in JSON) decoded; bad base64 is a 422 on its key."""
    out: dict[str, bytes] = {}
    for k, v in _string_map(obj, key, errs).items():
        problem = b64_errors(v)
        if problem:
            errs.append(invalid(Path(key).key(k), REDACTED if redact else v, problem))
        else:
            out[k] = _decoded(v)
    return out


def _immutable_update_errors(new: dict, old: dict, fields: tuple[str, ...]) -> list[FieldError]:
    if old.get("immutable") is not True:
        return []
    errs: list[FieldError] = []
    if new.get("immutable") is not True:
        errs.append(forbidden(Path("immutable"), IMMUTABLE_WHEN_SET))
    for f in fields:
        if (new.get(f) or {}) != (old.get(f) or {}):
            errs.append(forbidden(Path(f), IMMUTABLE_WHEN_SET))
    return errs


# ---- ConfigMap -------------------------------------------------------------------------------

def configmap_validate(obj: dict) -> list[FieldError]:
    errs = validate_object_meta(obj, True, dns1123_subdomain_errors)
    _immutable_flag(obj, errs)
    data = _string_map(obj, "data", errs)
    binary = _bytes_map(obj, "binaryData", errs, redact=False)
    total = 0
    for key, value in data.items():
        errs.extend(invalid(Path("data").key(key), key, m) for m in config_map_key_errors(key))
        if key in binary:
            errs.append(invalid(Path("data").key(key), key, "duplicate of key present in binaryData"))
        total += len(value.encode())
    for key, value in binary.items():
        errs.extend(invalid(Path("binaryData").key(key), key, m) for m in config_map_key_errors(key))
        total += len(value)
    if total > MAX_SIZE:
        errs.append(too_long(Path(""), MAX_SIZE))
    return errs


def configmap_validate_update(new: dict, old: dict) -> list[FieldError]:
    return (validate_object_meta_update(new, old)
            + _immutable_update_errors(new, old, ("data", "binaryData")) + configmap_validate(new))


def configmap_strategy() -> Strategy:
    return Strategy(default=lambda obj: None, validate=configmap_validate,
                    validate_update=configmap_validate_update, status_via_main=True)


# ---- Secret ----------------------------------------------------------------------------------

def secret_default(obj: dict) -> None:
    """SetDefaults_Secret (type Opaque) and the v1 → internal conversion: `stringData` entries
    overwrite `data`'s, base64-encoded, and `stringData` is not stored. A `stringData` of the
    wrong shape stays for validation to report."""
    if not obj.get("type"):
        obj["type"] = OPAQUE
    string_data = obj.get("stringData")
    if string_data is None:
        obj.pop("stringData", None)
        return
    data = obj.get("data")
    if not isinstance(string_data, dict) or not all(isinstance(v, str) for v in string_data.values()) \
            or not isinstance(data, (dict, type(None))):
        return
    merged = dict(data or {})
    merged.update({k: base64.b64encode(v.encode()).decode() for k, v in string_data.items()})
    if merged or data is not None:
        obj["data"] = merged
    del obj["stringData"]


def secret_validate(obj: dict) -> list[FieldError]:
    errs = validate_object_meta(obj, True, dns1123_subdomain_errors)
    _immutable_flag(obj, errs)
    if "stringData" in obj:  # only when defaulting could not fold it into data
        _string_map(obj, "stringData", errs)
    data = _bytes_map(obj, "data", errs, redact=True)
    total = 0
    for key, value in data.items():
        errs.extend(invalid(Path("data").key(key), key, m) for m in config_map_key_errors(key))
        total += len(value)
    if total > MAX_SIZE:
        errs.append(too_long(Path("data"), MAX_SIZE))
    type_ = obj.get("type")
    if not isinstance(type_, str):
        errs.append(wrong_type(Path("type"), type_, "string"))
        return errs
    errs.extend(_type_errors(obj, type_, data))
    return errs


def _type_errors(obj: dict, type_: str, data: dict[str, bytes]) -> list[FieldError]:
    """The keys each built-in type requires (ValidateSecret's switch); other types are free-form."""
    path = Path("data")
    if type_ == SA_TOKEN:
        annotations = (obj.get("metadata") or {}).get("annotations") or {}
        if not isinstance(annotations, dict) or not annotations.get(SA_NAME_ANNOTATION):
            return [required(Path("metadata", "annotations").key(SA_NAME_ANNOTATION))]
    elif type_ in (DOCKERCFG, DOCKERCONFIGJSON):
        key = ".dockercfg" if type_ == DOCKERCFG else ".dockerconfigjson"
        if key not in data:
            return [required(path.key(key))]
        try:
            parsed = orjson.loads(data[key])
        except orjson.JSONDecodeError as e:
            return [invalid(path.key(key), REDACTED, str(e))]
        if not isinstance(parsed, dict):
            return [invalid(path.key(key), REDACTED,
                            go_unmarshal_error(parsed, "map[string]interface {}"))]
    elif type_ == BASIC_AUTH:
        if "username" not in data and "password" not in data:
            return [required(path.key("username")), required(path.key("password"))]
    elif type_ == SSH_AUTH:
        if not data.get("ssh-privatekey"):
            return [required(path.key("ssh-privatekey"))]
    elif type_ == TLS:
        return [required(path.key(k)) for k in ("tls.crt", "tls.key") if k not in data]
    return []


def secret_validate_update(new: dict, old: dict) -> list[FieldError]:
    errs = validate_object_meta_update(new, old)
    if new.get("type") != old.get("type"):
        errs.append(invalid(Path("type"), new.get("type"), IMMUTABLE))
    errs.extend(_immutable_update_errors(new, old, ("data",)))
    return errs + secret_validate(new)


def secret_strategy() -> Strategy:
    return Strategy(default=secret_default, validate=secret_validate,
                    validate_update=secret_validate_update, status_via_main=True)


# ---- ServiceAccount --------------------------------------------------------------------------

def serviceaccount_validate(obj: dict) -> list[FieldError]:
    errs = validate_object_meta(obj, True, dns1123_subdomain_errors)
    automount = obj.get("automountServiceAccountToken")
    if automount is not None and not isinstance(automount, bool):
        errs.append(wrong_type(Path("automountServiceAccountToken"), automount, "boolean"))
    for key in ("secrets", "imagePullSecrets"):
        items = obj.get(key)
        if items is None:
            continue
        if not isinstance(items, list):
            errs.append(wrong_type(Path(key), items, "array"))
            continue
        for i, ref in enumerate(items):
            if not isinstance(ref, dict):
                errs.append(wrong_type(Path(key).index(i), ref, "object"))
                continue
            for field in ("name", "namespace", "kind", "apiVersion", "uid", "resourceVersion", "fieldPath"):
                if ref.get(field) is not None and not isinstance(ref[field], str):
                    errs.append(wrong_type(Path(key).index(i).child(field), ref[field], "string"))
    return errs


def serviceaccount_validate_update(new: dict, old: dict) -> list[FieldError]:
    return validate_object_meta_update(new, old) + serviceaccount_validate(new)


def serviceaccount_strategy() -> Strategy:
    return Strategy(default=lambda obj: None, validate=serviceaccount_validate,
                    validate_update=serviceaccount_validate_update, status_via_main=True)
