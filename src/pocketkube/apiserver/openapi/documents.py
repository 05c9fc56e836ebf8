"""The OpenAPI v3 documents we serve: the `/openapi/v3` root and one document per group-version.

kubectl reads them before create/apply/replace/edit: it needs, per kind, a `patch` operation
carrying `x-kubernetes-group-version-kind` and a `fieldValidation` parameter, and `kubectl explain`
reads the component schemas. The component schemas are upstream's (apiserver/schemas.py), converted
from JSON Schema 2020-12 to OpenAPI 3.0 and shaped like the apiserver's own output; the paths and
operations are generated from the resources we serve (api/resources.py). Documents are built on
first request, once per group-version, and cached as bytes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from functools import cache
from typing import Any

import orjson

from pocketkube import KUBERNETES_VERSION
from pocketkube.api.resources import RESOURCES, Resource
from pocketkube.apiserver.schemas import definitions, names_by_gvk

_UPSTREAM_REF = "#/$defs/"
_OPENAPI_REF = "#/components/schemas/"
_META = "io.k8s.apimachinery.pkg.apis.meta.v1."
_SCALE_GVK = ("autoscaling", "v1", "Scale")


def _schema_name(group: str, version: str, kind: str) -> str | None:
    return names_by_gvk().get((group, version, kind))


# ----------------------------------------------------------------------------------------------
# JSON Schema (2020-12, nullable types) -> OpenAPI 3.0 component schemas


def _convert(node: Any) -> Any:
    """One upstream schema node in OpenAPI 3.0 form, shaped like the apiserver's own output."""
    if isinstance(node, list):
        return [_convert(item) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "type":
            kinds = [t for t in (value if isinstance(value, list) else [value]) if t != "null"]
            if len(kinds) == 1:
                out["type"] = kinds[0]
        elif key == "enum":
            out["enum"] = [v for v in value if v is not None]
        elif key == "$ref":
            out["$ref"] = _OPENAPI_REF + value.removeprefix(_UPSTREAM_REF)
        elif key == "properties":
            out["properties"] = {name: _convert(prop) for name, prop in value.items()}
        elif key in ("items", "additionalProperties", "oneOf", "allOf", "anyOf"):
            out[key] = _convert(value)
        else:
            out[key] = value
    if "$ref" in out and len(out) > 1:
        # OpenAPI 3.0 ignores siblings of $ref; Kubernetes wraps the reference in allOf.
        out = {"allOf": [{"$ref": out.pop("$ref")}], **out}
    return out


def _component(name: str) -> dict[str, Any]:
    schema = _convert(definitions()[name])
    if "x-kubernetes-group-version-kind" in schema:
        # kubernetes-validate pins apiVersion/kind with an enum; the apiserver does not.
        for field in ("apiVersion", "kind"):
            schema.get("properties", {}).get(field, {}).pop("enum", None)
    return schema


def _referenced(node: Any, found: set[str]) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(_OPENAPI_REF):
            found.add(ref[len(_OPENAPI_REF):])
        for value in node.values():
            _referenced(value, found)
    elif isinstance(node, list):
        for value in node:
            _referenced(value, found)


def _components_closure(node: Any) -> dict[str, Any]:
    """Every component schema reachable from the $refs in node, sorted by name."""
    schemas: dict[str, Any] = {}
    pending: set[str] = set()
    _referenced(node, pending)
    while pending:
        name = pending.pop()
        if name in schemas or name not in definitions():
            continue
        schemas[name] = _component(name)
        _referenced(schemas[name], pending)
    return dict(sorted(schemas.items()))


# ----------------------------------------------------------------------------------------------
# Paths and operations


def _param(name: str, where: str, description: str, schema_type: str = "string",
           required: bool = False, unique: bool = False) -> dict[str, Any]:
    param: dict[str, Any] = {"name": name, "in": where, "description": description,
                             "schema": {"type": schema_type}}
    if required:
        param["required"] = True
    if unique:
        param["schema"]["uniqueItems"] = True
    return param


_PRETTY = _param("pretty", "query", "If 'true', then the output is pretty printed.")
_DRY_RUN = _param("dryRun", "query", "When present, indicates that modifications should not be "
                  "persisted. The only valid value is 'All': process the request fully, persist "
                  "nothing.", unique=True)
_FIELD_MANAGER = _param("fieldManager", "query", "The name of the actor making these changes, "
                        "recorded in managedFields.", unique=True)
_FIELD_VALIDATION = _param("fieldValidation", "query", "How the server treats unknown or "
                           "duplicate fields in the request body: Ignore (drop them silently), "
                           "Warn (drop them and return a warning per field) or Strict (reject "
                           "the request with a BadRequest error).", unique=True)
_FORCE = _param("force", "query", "Force an apply request to take ownership of conflicting "
                "fields. Must be unset for non-apply patch requests.", "boolean", unique=True)
_LIST_PARAMS = [
    _param("allowWatchBookmarks", "query", "Ask for BOOKMARK watch events.", "boolean", unique=True),
    _param("continue", "query", "The continue token of a previous paginated list.", unique=True),
    _param("fieldSelector", "query", "Restrict the returned objects by their fields.", unique=True),
    _param("labelSelector", "query", "Restrict the returned objects by their labels.", unique=True),
    _param("limit", "query", "The maximum number of objects to return.", "integer", unique=True),
    _param("resourceVersion", "query", "The resourceVersion the list or watch starts from.",
           unique=True),
    _param("resourceVersionMatch", "query", "How resourceVersion applies to a list.", unique=True),
    _param("sendInitialEvents", "query", "Start a watch with synthetic ADDED events for the "
           "current state, ended by a bookmark.", "boolean", unique=True),
    _param("timeoutSeconds", "query", "Timeout for the list or watch call.", "integer", unique=True),
    _param("watch", "query", "Watch for changes instead of listing.", "boolean", unique=True),
]
_DELETE_PARAMS = [
    _DRY_RUN,
    _param("gracePeriodSeconds", "query", "Seconds before the object is deleted; zero means "
           "delete immediately.", "integer", unique=True),
    _param("orphanDependents", "query", "Deprecated: use propagationPolicy.", "boolean",
           unique=True),
    _param("propagationPolicy", "query", "Garbage collection of dependents: Orphan, Background "
           "or Foreground.", unique=True),
]
_PATCH_TYPES = ("application/apply-patch+yaml", "application/json-patch+json",
                "application/merge-patch+json", "application/strategic-merge-patch+json")


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _OPENAPI_REF + name}


def _json_response(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _body(schema: dict[str, Any], content_types: Iterable[str] = ("*/*",)) -> dict[str, Any]:
    return {"required": True, "content": {t: {"schema": schema} for t in content_types}}


def _gvk(group: str, version: str, kind: str) -> dict[str, str]:
    return {"group": group, "kind": kind, "version": version}


def _operation_id(verb: str, r: Resource, suffix: str = "", namespaced: bool | None = None,
                  collection: bool = False) -> str:
    """Kubernetes' naming: patchCoreV1NamespacedService, deleteCoreV1CollectionNamespacedPod."""
    group = r.group.split(".")[0].capitalize() if r.group else "Core"
    scope = "Namespaced" if (r.namespaced if namespaced is None else namespaced) else ""
    return f"{verb}{group}{r.version.capitalize()}{'Collection' if collection else ''}{scope}" \
           f"{r.kind}{suffix}"


def _tag(r: Resource) -> str:
    return f"{r.group.split('.')[0] if r.group else 'core'}_{r.version}"


def _operation(r: Resource, action: str, op_id: str, description: str, gvk: dict[str, str],
               parameters: list[dict[str, Any]], responses: dict[str, Any],
               body: dict[str, Any] | None = None) -> dict[str, Any]:
    op: dict[str, Any] = {"tags": [_tag(r)], "description": description, "operationId": op_id,
                          "parameters": parameters}
    if body is not None:
        op["requestBody"] = body
    op["responses"] = {**responses, "401": {"description": "Unauthorized"}}
    op["x-kubernetes-action"] = action
    op["x-kubernetes-group-version-kind"] = gvk
    return op


def _object_operations(r: Resource, suffix: str, schema: str, gvk: dict[str, str],
                       what: str) -> dict[str, Any]:
    """get/put/patch on one object: the resource itself, or its status or scale subresource."""
    ok = _json_response("OK", _ref(schema))
    created = _json_response("Created", _ref(schema))
    return {
        "get": _operation(r, "get", _operation_id("read", r, suffix), f"read {what}", gvk, [],
                          {"200": ok}),
        "put": _operation(r, "put", _operation_id("replace", r, suffix), f"replace {what}", gvk,
                          [_DRY_RUN, _FIELD_MANAGER, _FIELD_VALIDATION], {"200": ok, "201": created},
                          _body(_ref(schema))),
        "patch": _operation(r, "patch", _operation_id("patch", r, suffix),
                            f"partially update {what}", gvk,
                            [_DRY_RUN, _FIELD_MANAGER, _FIELD_VALIDATION, _FORCE],
                            {"200": ok, "201": created}, _body(_ref(_META + "Patch"), _PATCH_TYPES)),
    }


def _path_params(r: Resource, with_name: bool) -> list[dict[str, Any]]:
    params = []
    if with_name:
        params.append(_param("name", "path", f"name of the {r.kind}", required=True, unique=True))
    if r.namespaced:
        params.append(_param("namespace", "path", "object name and auth scope, such as for teams "
                             "and projects", required=True, unique=True))
    return [*params, _PRETTY]


def _collection_operations(r: Resource, schema: str, list_schema: str,
                           gvk: dict[str, str]) -> dict[str, Any]:
    ops: dict[str, Any] = {}
    if "list" in r.verbs:
        ops["get"] = _operation(r, "list", _operation_id("list", r),
                                f"list or watch objects of kind {r.kind}", gvk, _LIST_PARAMS,
                                {"200": _json_response("OK", _ref(list_schema))})
    if "create" in r.verbs:
        ops["post"] = _operation(
            r, "post", _operation_id("create", r), f"create a {r.kind}", gvk,
            [_DRY_RUN, _FIELD_MANAGER, _FIELD_VALIDATION],
            {"200": _json_response("OK", _ref(schema)),
             "201": _json_response("Created", _ref(schema)),
             "202": _json_response("Accepted", _ref(schema))}, _body(_ref(schema)))
    if "deletecollection" in r.verbs:
        ops["delete"] = _operation(
            r, "deletecollection", _operation_id("delete", r, collection=True),
            f"delete collection of {r.kind}", gvk, [*_LIST_PARAMS, *_DELETE_PARAMS],
            {"200": _json_response("OK", _ref(_META + "Status"))},
            _body(_ref(_META + "DeleteOptions")))
    return ops


def _item_operations(r: Resource, schema: str, gvk: dict[str, str]) -> dict[str, Any]:
    verb_of = {"get": "get", "put": "update", "patch": "patch"}
    ops = {method: op for method, op in
           _object_operations(r, "", schema, gvk, f"the specified {r.kind}").items()
           if verb_of[method] in r.verbs}
    if "delete" in r.verbs:
        ops["delete"] = _operation(
            r, "delete", _operation_id("delete", r), f"delete a {r.kind}", gvk, _DELETE_PARAMS,
            {"200": _json_response("OK", _ref(_META + "Status")),
             "202": _json_response("Accepted", _ref(_META + "Status"))},
            _body(_ref(_META + "DeleteOptions")))
    return ops


def _subresource_paths(r: Resource, item_path: str, schema: str,
                       gvk: dict[str, str]) -> dict[str, Any]:
    params = _path_params(r, True)
    paths: dict[str, Any] = {}
    if "status" in r.subresources:
        ops = _object_operations(r, "Status", schema, gvk, f"status of the specified {r.kind}")
        paths[item_path + "/status"] = {**ops, "parameters": params}
    if "scale" in r.subresources:
        scale = _schema_name(*_SCALE_GVK) or _META + "Status"
        ops = _object_operations(r, "Scale", scale, _gvk(*_SCALE_GVK),
                                 f"scale of the specified {r.kind}")
        paths[item_path + "/scale"] = {**ops, "parameters": params}
    if "binding" in r.subresources:
        binding = _schema_name("", "v1", "Binding") or _META + "Status"
        paths[item_path + "/binding"] = {
            "post": _operation(r, "post", _operation_id("create", r, "Binding"),
                               f"create binding of a {r.kind}", _gvk("", "v1", "Binding"),
                               [_DRY_RUN, _FIELD_MANAGER, _FIELD_VALIDATION],
                               {"200": _json_response("OK", _ref(binding)),
                                "201": _json_response("Created", _ref(binding))},
                               _body(_ref(binding))),
            "parameters": params}
    if "token" in r.subresources:
        token = _schema_name("authentication.k8s.io", "v1", "TokenRequest") or _META + "Status"
        paths[item_path + "/token"] = {
            "post": _operation(r, "post", _operation_id("create", r, "Token"),
                               f"create token of a {r.kind}", _gvk("authentication.k8s.io", "v1", "TokenRequest"),
                               [_DRY_RUN, _FIELD_MANAGER, _FIELD_VALIDATION],
                               {"200": _json_response("OK", _ref(token)),
                                "201": _json_response("Created", _ref(token))},
                               _body(_ref(token))),
            "parameters": params}
    if "finalize" in r.subresources:
        paths[item_path + "/finalize"] = {
            "put": _operation(r, "put", _operation_id("replace", r, "Finalize"),
                              f"replace finalize of the specified {r.kind}", gvk,
                              [_DRY_RUN, _FIELD_MANAGER, _FIELD_VALIDATION],
                              {"200": _json_response("OK", _ref(schema))}, _body(_ref(schema))),
            "parameters": params}
    if "log" in r.subresources:
        log_params = [
            _param("container", "query", "The container for which to stream logs.", unique=True),
            _param("follow", "query", "Follow the log stream of the pod.", "boolean", unique=True),
            _param("previous", "query", "Return the logs of the previous container instance.",
                   "boolean", unique=True),
            _param("sinceSeconds", "query", "Only logs newer than this many seconds.", "integer",
                   unique=True),
            _param("tailLines", "query", "Only this many lines from the end of the logs.",
                   "integer", unique=True),
            _param("timestamps", "query", "Prefix every line with an RFC3339 timestamp.",
                   "boolean", unique=True),
        ]
        paths[item_path + "/log"] = {
            "get": _operation(r, "get", _operation_id("read", r, "Log"),
                              f"read log of the specified {r.kind}", gvk, log_params,
                              {"200": {"description": "OK", "content": {
                                  "text/plain": {"schema": {"type": "string"}}}}}),
            "parameters": params}
    return paths


def _resource_paths(r: Resource) -> dict[str, Any]:
    """Every path of one resource, with the operations its verbs allow."""
    schema = _schema_name(r.group, r.version, r.kind) or _META + "Status"
    list_schema = _schema_name(r.group, r.version, r.list_kind) or _META + "Status"
    gvk = _gvk(r.group, r.version, r.kind)
    collection_path = f"{r.prefix}{'/namespaces/{namespace}' if r.namespaced else ''}/{r.plural}"
    item_path = collection_path + "/{name}"
    paths: dict[str, Any] = {}
    if collection := _collection_operations(r, schema, list_schema, gvk):
        paths[collection_path] = {**collection, "parameters": _path_params(r, False)}
    if item := _item_operations(r, schema, gvk):
        paths[item_path] = {**item, "parameters": _path_params(r, True)}
    paths.update(_subresource_paths(r, item_path, schema, gvk))
    if r.namespaced and "list" in r.verbs:
        paths[f"{r.prefix}/{r.plural}"] = {
            "get": _operation(r, "list", _operation_id("list", r, "ForAllNamespaces", False),
                              f"list or watch objects of kind {r.kind}", gvk, _LIST_PARAMS,
                              {"200": _json_response("OK", _ref(list_schema))}),
            "parameters": [_PRETTY]}
    return paths


# ----------------------------------------------------------------------------------------------
# Documents


def _document_path(r: Resource) -> str:
    return r.prefix.lstrip("/")


@cache
def _served_paths() -> dict[str, list[Resource]]:
    """Resources by document path ("api/v1", "apis/apps/v1"), in discovery order."""
    served: dict[str, list[Resource]] = {}
    for r in RESOURCES:
        served.setdefault(_document_path(r), []).append(r)
    return served


# Built on first request, once per served group-version (caches never grow with client input).
@cache
def _built_document_bytes(path: str) -> bytes:
    paths: dict[str, Any] = {}
    for r in _served_paths()[path]:
        paths.update(_resource_paths(r))
    document = {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": KUBERNETES_VERSION},
        "paths": dict(sorted(paths.items())),
        "components": {"schemas": _components_closure(paths)},
    }
    return orjson.dumps(document)


@cache
def _built_document(path: str) -> dict[str, Any]:
    return orjson.loads(_built_document_bytes(path))


def openapi_v3_document_bytes(group_version_path: str) -> bytes | None:
    """The serialized document for "api/v1" or "apis/apps/v1"; None if we serve no such GV."""
    path = group_version_path.strip("/")
    return _built_document_bytes(path) if path in _served_paths() else None


def openapi_v3_document(group_version_path: str) -> dict[str, Any] | None:
    """The OpenAPI 3.0 document of one group-version ("api/v1", "apis/apps/v1"), or None.

    The dict is cached and shared: treat it as read-only.
    """
    path = group_version_path.strip("/")
    return _built_document(path) if path in _served_paths() else None


@cache
def openapi_v3_root() -> dict[str, Any]:
    """The /openapi/v3 index: one entry per served group-version, with a content hash."""
    paths: dict[str, Any] = {}
    for path in _served_paths():
        digest = hashlib.sha512(_built_document_bytes(path)).hexdigest().upper()
        paths[path] = {"serverRelativeURL": f"/openapi/v3/{path}?hash={digest}"}
    return {"paths": paths}
