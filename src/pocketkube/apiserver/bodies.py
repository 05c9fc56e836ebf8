"""Request bodies: decoding by Content-Type, kind checks and unknown-field handling."""

from __future__ import annotations

import orjson
import yaml

from pocketkube.api import errors
from pocketkube.api.resources import Resource

MAX_BODY = 3 * 1024 * 1024  # the Kubernetes apiserver's request size limit
# No object we serve nests deeper than ~20 levels; far deeper input would exhaust Python's recursion
# limit in copying, validation or encoding (orjson stops at 255), so it is refused up front.
MAX_DEPTH = 100
YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml")


def media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def decode_object(content_type: str, data: bytes) -> dict:
    """A create/update body as a dict, or a 4xx naming what is wrong with it."""
    mt = media_type(content_type) or "application/json"
    if mt == "application/vnd.kubernetes.protobuf":
        from pocketkube.apiserver.protobuf import decode_body

        return decode_body(data)
    if mt == "application/json":
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError as e:
            raise errors.BadRequest(f"couldn't get version/kind; json parse error: {e}") from None
    elif mt in YAML_TYPES:
        obj = _decode_yaml(data)
    else:
        raise errors.UnsupportedMediaType(
            'the body of the request was in an unknown format - accepted media types include: '
            'application/json, application/yaml, application/vnd.kubernetes.protobuf')
    if not isinstance(obj, dict):
        raise errors.BadRequest(f"Object 'Kind' is missing in '{data[:200].decode(errors='replace')}'")
    check_depth(obj)
    return obj


def _decode_yaml(data: bytes):
    # Read as Kubernetes reads YAML (as apply patches are): JSON values only, no alias bombs.
    from pocketkube.apiserver.yamljson import JsonCompatibleYamlLoader, as_json

    try:
        return as_json(yaml.load(data, Loader=JsonCompatibleYamlLoader))
    except yaml.YAMLError as e:
        raise errors.BadRequest(f"couldn't get version/kind; yaml parse error: {e}") from None
    except RecursionError:
        raise errors.BadRequest(_too_deep()) from None


def check_depth(value, limit: int = MAX_DEPTH) -> None:
    """Refuse a decoded body nested more than `limit` levels deep (an iterative walk)."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        for child in children:
            if isinstance(child, (dict, list)):
                if depth + 1 > limit:
                    raise errors.BadRequest(_too_deep(limit))
                stack.append((child, depth + 1))


def _too_deep(limit: int = MAX_DEPTH) -> str:
    return f"the object is nested too deeply: more than {limit} levels"


def check_kind(obj: dict, res: Resource, expected_kind: str | None = None,
               expected_api_version: str | None = None) -> None:
    """The body must be the kind the URL names (kind/apiVersion may be omitted)."""
    kind = expected_kind or res.kind
    api_version = expected_api_version or res.api_version
    got_av, got_kind = obj.get("apiVersion"), obj.get("kind")
    if got_av not in (None, "") and got_av != api_version:
        raise errors.BadRequest(
            f"the API version in the data ({got_av}) does not match the expected API version ({api_version})")
    if got_kind not in (None, "") and got_kind != kind:
        raise errors.BadRequest(
            f'{kind} in version "{api_version.split("/")[-1]}" cannot be handled as a {kind}: '
            f'the kind in the data ({got_kind}) does not match the expected kind ({kind})')


def prune(obj: dict, paths: list[str]) -> None:
    """Drop fields named by paths like `spec.ports[0].bogus` (what a typed decoder would drop)."""
    for path in paths:
        steps = _split(path)
        cur = obj
        for step in steps[:-1]:
            if isinstance(step, int):
                cur = cur[step] if isinstance(cur, list) and step < len(cur) else None
            else:
                cur = cur.get(step) if isinstance(cur, dict) else None
            if cur is None:
                break
        else:
            last = steps[-1]
            if isinstance(cur, dict) and isinstance(last, str):
                cur.pop(last, None)


def _split(path: str) -> list[str | int]:
    out: list[str | int] = []
    for part in path.lstrip(".").split("."):
        indexed = "[" in part
        while "[" in part:
            head, _, rest = part.partition("[")
            if head:
                out.append(head)
            idx, _, part = rest.partition("]")
            out.append(int(idx) if idx.isdigit() else idx)
        if part or not indexed:  # a field may be named "": `spec.` names it inside spec
            out.append(part)
    return out
