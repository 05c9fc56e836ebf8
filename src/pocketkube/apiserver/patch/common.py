"""What every patch type shares: decoding a body, the 422 for a patch that cannot apply, and Go's texts.

Kubernetes words decode and merge errors with Go's type names and `%v` renderings
(`json: cannot unmarshal array into Go value of type map[string]interface {}`); the helpers here
reproduce them so our 400s read like the apiserver's.
"""

from __future__ import annotations

from typing import Any

import orjson
import yaml

from pocketkube.api.errors import ApiError, BadRequest
from pocketkube.api.validation import go_unmarshal_error, json_type
from pocketkube.apiserver.yamljson import JsonCompatibleYamlLoader, as_json

Json = Any


class PatchRejected(ApiError):
    """422 for a well-formed patch that cannot be applied (failed `test`, missing path).

    Kubernetes answers these with its generic 422 Status, without the underlying error text; the
    text is kept in `cause` for logs.
    """
    code, reason = 422, "Invalid"

    def __init__(self, cause: str) -> None:
        super().__init__("the server rejected our request due to an error in our request", {})
        self.cause = cause


def decode_json(body: bytes) -> Json:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise BadRequest(f"error decoding patch: {e}") from None


def decode_object(body: bytes) -> dict:
    value = decode_json(body)
    if not isinstance(value, dict):
        raise BadRequest(go_unmarshal_error(value, "map[string]interface {}"))
    return value


def decode_yaml_object(body: bytes) -> dict:
    try:
        value = orjson.loads(body)  # kubectl sends JSON; YAML parsing is the fallback
    except orjson.JSONDecodeError:
        try:
            value = as_json(yaml.load(body, Loader=JsonCompatibleYamlLoader))
        except yaml.YAMLError as e:
            raise BadRequest(f"error decoding YAML: {e}") from None
    if not isinstance(value, dict):
        raise BadRequest(f"error decoding YAML: the body is a {json_type(value)}, not an object")
    return value


_GO_TYPES = {"object": "map[string]interface {}", "array": "[]interface {}", "string": "string",
             "bool": "bool", "number": "float64", "null": "<nil>"}


def bad_arg_type(expected: str, actual: Json) -> str:
    return f"expected a {expected}, but received a {_GO_TYPES[json_type(actual)]}"


def go_repr(value: Json) -> str:
    """A value as Go's %v prints decoded JSON, for messages that match Kubernetes'."""
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{go_repr(v)}" for k, v in sorted(value.items())) + "]"
    if isinstance(value, list):
        return "[" + " ".join(go_repr(v) for v in value) + "]"
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
