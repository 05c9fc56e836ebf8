"""The REST verbs for every resource: get, list, watch, create, update, patch, delete."""

from __future__ import annotations

import time
from typing import Any

import orjson
from aiohttp import web

from pocketkube.api import errors
from pocketkube.api.resources import Resource
from pocketkube.apiserver import bodies
from pocketkube.apiserver.request import Target, bool_param, int_param, wants_table
from pocketkube.apiserver.watch import serve_watch
from pocketkube.registry.apps import scale
from pocketkube.registry.core.pods import binding
from pocketkube.registry.registry import Registry
from pocketkube.registry.store import ObjectStore, WatchEvent

JSON = "application/json"


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    return web.Response(body=data, status=status, content_type=JSON, headers=headers)


def status_body(e: errors.ApiError) -> bytes:
    """An error's Status as the API server writes it: JSON with Go's trailing newline."""
    return orjson.dumps(e.status()) + b"\n"


def _selectors(request: web.Request, res: Resource):
    """A predicate for ?labelSelector= and ?fieldSelector=, or None when neither is given."""
    from pocketkube.api.selectors import FieldSelector, LabelSelector
    from pocketkube.registry.watchhub import selector_trigger

    label_s = request.query.get("labelSelector", "")
    field_s = request.query.get("fieldSelector", "")
    if not label_s and not field_s:
        return None
    try:
        ls = LabelSelector.parse(label_s) if label_s else None
    except ValueError as e:
        raise errors.BadRequest(f"unable to parse requirement: {e}" if "unable to parse" not in str(e) else str(e)) \
            from None
    try:
        fs = FieldSelector.parse(field_s, res.kind) if field_s else None
    except ValueError as e:
        raise errors.BadRequest(f'"{field_s}" is not a known field selector: {e}') from None

    def match(obj: dict) -> bool:
        if ls is not None:
            labels = (obj.get("metadata") or {}).get("labels") or {}
            if not ls.matches(labels):
                return False
        return fs is None or fs.matches(obj)
    # The value the selector pins of the kind's trigger field (pods: spec.nodeName): the store then
    # serves this watch from its shared, per-node dispatched watch (registry.watchhub).
    match.trigger = selector_trigger(res.kind, fs.requirements) if fs is not None else None  # type: ignore[attr-defined]
    return match


class Handlers:
    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    # ---- entry ----
    async def dispatch(self, request: web.Request, t: Target) -> web.StreamResponse:
        store = self.registry.store_for(t.res)
        method = request.method
        if t.subresource == "scale":
            return await self._scale(request, store, t)
        if t.subresource == "log":
            return await self._log(request, store, t)
        if t.subresource == "proxy":
            from pocketkube.apiserver.nodeproxy import serve as serve_node_proxy

            return await serve_node_proxy(request, t.name, t.proxy_path)
        if t.subresource in ("exec", "attach", "portforward"):
            from pocketkube.apiserver.streams.handler import serve_stream

            return await serve_stream(request, self.registry, t)
        if t.subresource == "token":
            from pocketkube.apiserver.satoken.http import serve_token_request

            return await serve_token_request(request, self.registry, t, await self._body(request))
        if t.subresource == "binding":
            if method != "POST":
                raise errors.MethodNotAllowed("the server does not allow this method on the requested resource")
            return await self._bind(request, store, t)
        if t.subresource == "eviction":
            if method != "POST":
                raise errors.MethodNotAllowed("the server does not allow this method on the requested resource")
            return await self._evict(request, store, t)
        if method == "GET":
            if t.legacy_watch or bool_param(request.query.get("watch")):
                return await self._watch(request, store, t)
            if t.name:
                return self._render_one(request, store, store.get_bytes(t.namespace, t.name))
            return await self._list(request, store, t)
        if method == "POST" and not t.name:
            return await self._create(request, store, t)
        if method == "PUT" and t.name:
            return await self._update(request, store, t)
        if method == "PATCH" and t.name:
            return await self._patch(request, store, t)
        if method == "DELETE":
            if t.name:
                return await self._delete(request, store, t)
            return await self._delete_collection(request, store, t)
        raise errors.MethodNotAllowed("the server does not allow this method on the requested resource",
                                      {})

    # ---- reads ----
    def _render_one(self, request: web.Request, store: ObjectStore, value: bytes) -> web.Response:
        if wants_table(request.headers.get("Accept", "")):
            from pocketkube.apiserver.tables import table

            obj = orjson.loads(value)
            return json_response(table(store.res.plural, store.res.group, [obj], time.time(),
                                       include_object=request.query.get("includeObject", "Metadata"),
                                       resource_version=obj["metadata"].get("resourceVersion", "")))
        return json_response(value)

    async def _list(self, request: web.Request, store: ObjectStore, t: Target) -> web.StreamResponse:
        q = request.query
        result = await store.list_page(t.namespace, match=_selectors(request, t.res), limit=int_param(q, "limit") or 0,
                                       continue_token=q.get("continue", ""),
                                       resource_version=q.get("resourceVersion", ""),
                                       resource_version_match=q.get("resourceVersionMatch", ""))
        rv = str(result.resource_version)
        if wants_table(request.headers.get("Accept", "")):
            from pocketkube.apiserver.tables import table

            objs = [orjson.loads(v) for v in result.items]
            return json_response(table(store.res.plural, store.res.group, objs, time.time(),
                                       include_object=request.query.get("includeObject", "Metadata"),
                                       resource_version=rv, continue_token=result.continue_token,
                                       remaining=result.remaining))
        meta: dict[str, Any] = {"resourceVersion": rv}
        if result.continue_token:
            meta["continue"] = result.continue_token
        if result.remaining is not None:
            meta["remainingItemCount"] = result.remaining
        head = orjson.dumps({"kind": store.res.list_kind, "apiVersion": store.res.api_version, "metadata": meta})
        head = head[:-1] + b',"items":['
        if len(result.items) <= _STREAM_LIST_ITEMS:
            return json_response(head + b",".join(result.items) + b"]}")
        return await _stream_list(request, head, result.items)

    async def _watch(self, request: web.Request, store: ObjectStore, t: Target) -> web.StreamResponse:
        q = request.query
        match = _selectors(request, t.res)
        if t.name:
            inner = match
            name = t.name

            def match(obj: dict, inner=inner) -> bool:
                return obj.get("metadata", {}).get("name") == name and (inner is None or inner(obj))
        timeout = int_param(q, "timeoutSeconds")
        as_table = wants_table(request.headers.get("Accept", ""))

        def render(ev: WatchEvent, first: bool) -> bytes:
            if not as_table:
                return ev.value
            from pocketkube.apiserver.tables import table

            obj = ev.object()
            return orjson.dumps(table(store.res.plural, store.res.group, [obj], time.time(),
                                      resource_version=str(ev.revision), with_columns=first))
        return await serve_watch(request, store, t.namespace, match, q.get("resourceVersion", ""),
                                 float(timeout) if timeout else None, bool_param(q.get("allowWatchBookmarks")),
                                 bool_param(q.get("sendInitialEvents")), render)

    # ---- writes ----
    async def _body(self, request: web.Request) -> bytes:
        if request.content_length is not None and request.content_length > bodies.MAX_BODY:
            raise errors.RequestEntityTooLarge(f"Request entity too large: limit is {bodies.MAX_BODY}")
        # read() returns what is buffered, not the whole body: read until EOF, within the limit.
        parts: list[bytes] = []
        size = 0
        while chunk := await request.content.read(bodies.MAX_BODY + 1 - size):
            parts.append(chunk)
            size += len(chunk)
            if size > bodies.MAX_BODY:
                raise errors.RequestEntityTooLarge(f"Request entity too large: limit is {bodies.MAX_BODY}")
        return b"".join(parts)

    async def _decode(self, request: web.Request, res: Resource) -> tuple[dict, list[str]]:
        body = await self._body(request)
        content_type = request.headers.get("Content-Type", "")
        obj = bodies.decode_object(content_type, body)
        bodies.check_kind(obj, res)
        raw = body if bodies.media_type(content_type) in ("", JSON) else None
        return obj, self._field_validation(request, obj, res, raw)

    def _field_validation(self, request: web.Request, obj: dict, res: Resource,
                          raw_json: bytes | None = None) -> list[str]:
        """Strict rejects unknown (and duplicate) fields; Warn, the default, and Ignore drop them.

        Returns the warnings to send. For a patch (raw_json None) Kubernetes words the Strict
        error without the "cannot be handled" prefix.
        """
        mode = request.query.get("fieldValidation", "Warn")
        if mode not in ("Strict", "Warn", "Ignore"):
            raise errors.BadRequest(
                f'fieldValidation parameter unsupported: {mode}. Accepted values: "Ignore", "Strict", "Warn"')
        from pocketkube.apiserver import openapi

        if raw_json is not None:  # one walk of the raw body finds unknown and duplicate fields
            texts = openapi.field_errors(raw_json, res.api_version, res.kind)
            if not texts:
                return []
            unknown = openapi.unknown_fields(obj, res.api_version, res.kind)
        else:
            unknown = openapi.unknown_fields(obj, res.api_version, res.kind)
            texts = openapi.warning_texts(unknown)
            if not texts:
                return []
        if mode == "Strict":
            detail = openapi.strict_decoding_error(texts)
            raise errors.BadRequest(openapi.cannot_handle_message(res.kind, res.api_version, detail)
                                    if raw_json is not None else detail)
        bodies.prune(obj, unknown)
        return texts if mode == "Warn" else []

    @staticmethod
    def _warning_headers(warnings: list[str]) -> dict[str, str] | None:
        if not warnings:
            return None
        from multidict import CIMultiDict

        from pocketkube.apiserver.openapi import go_quote

        return CIMultiDict(("Warning", f"299 - {go_quote(w)}") for w in warnings)

    def _dry_run(self, request: web.Request) -> bool:
        values = request.query.getall("dryRun", [])
        for v in values:
            if v != "All":
                raise errors.BadRequest(f'Invalid dryRun value "{v}": supported values: "All"')
        return bool(values)

    async def _create(self, request: web.Request, store: ObjectStore, t: Target) -> web.Response:
        obj, warnings = await self._decode(request, t.res)
        if (t.res.group, t.res.plural) == ("certificates.k8s.io", "certificatesigningrequests"):
            from pocketkube.registry.certificates.csr import set_requester

            set_requester(obj, request.get("user"), request.get("user_info"))
        if t.res.namespaced:
            self.registry.check_namespace_writable(t.namespace or (obj.get("metadata") or {}).get("namespace")
                                                   or "default")
        created = await store.create(obj, t.namespace, dry_run=self._dry_run(request))
        return json_response(created, 201, self._warning_headers(warnings))

    async def _update(self, request: web.Request, store: ObjectStore, t: Target) -> web.Response:
        obj, warnings = await self._decode(request, t.res)
        _check_identity(obj, t)
        updated = await store.update(t.namespace, t.name, obj, subresource=t.subresource,
                                     dry_run=self._dry_run(request))
        return json_response(updated, 200, self._warning_headers(warnings))

    async def _patch(self, request: web.Request, store: ObjectStore, t: Target) -> web.Response:
        from pocketkube.apiserver.patch import apply_patch

        content_type = bodies.media_type(request.headers.get("Content-Type", ""))
        body = await self._body(request)
        warnings: list[str] = []
        dry_run = self._dry_run(request)

        def mutate(old: dict) -> dict:
            new = apply_patch(content_type, old, body, t.res.kind)
            if not isinstance(new, dict):
                raise errors.BadRequest("the patch did not produce an object")
            bodies.check_depth(new)
            bodies.check_kind(new, t.res)
            _check_identity(new, t)
            warnings[:] = self._field_validation(request, new, t.res)
            return new

        if content_type == "application/apply-patch+yaml" and not request.query.get("fieldManager"):
            raise errors.BadRequest("PATCH requests with apply-patch+yaml require a fieldManager")
        if content_type == "application/apply-patch+yaml" and store.try_get(t.namespace, t.name) is None:
            obj = mutate({})
            obj.setdefault("metadata", {})["name"] = t.name
            if t.res.namespaced:
                self.registry.check_namespace_writable(t.namespace)
            created = await store.create(obj, t.namespace, dry_run=dry_run)
            return json_response(created, 201, self._warning_headers(warnings))
        updated = await store.guaranteed_update(t.namespace, t.name, mutate, subresource=t.subresource,
                                                dry_run=dry_run)
        return json_response(updated, 200, self._warning_headers(warnings))

    async def _delete_options(self, request: web.Request) -> dict:
        data = await self._body(request)
        opts: dict = {}
        if data.strip():
            try:
                opts = orjson.loads(data)
            except orjson.JSONDecodeError as e:
                raise errors.BadRequest(f"error decoding DeleteOptions: {e}") from None
            if not isinstance(opts, dict):
                raise errors.BadRequest("DeleteOptions must be an object")
        grace = int_param(request.query, "gracePeriodSeconds")
        if grace is not None:
            opts["gracePeriodSeconds"] = grace
        if "propagationPolicy" in request.query:
            opts["propagationPolicy"] = request.query["propagationPolicy"]
        policy = opts.get("propagationPolicy")
        if policy not in (None, "Orphan", "Background", "Foreground"):
            raise errors.BadRequest(
                f'propagationPolicy: Unsupported value: "{policy}": supported values: '
                '"Background", "Foreground", "Orphan"')
        g = opts.get("gracePeriodSeconds")
        if g is not None and (not isinstance(g, int) or isinstance(g, bool)):
            raise errors.BadRequest("gracePeriodSeconds must be an integer")
        _check_preconditions(opts.get("preconditions"))
        return opts

    async def _delete(self, request: web.Request, store: ObjectStore, t: Target) -> web.Response:
        opts = await self._delete_options(request)
        self.registry.check_deletable(t.res, t.name)
        obj, _ = await store.delete(t.namespace, t.name, grace_period=opts.get("gracePeriodSeconds"),
                                    preconditions=opts.get("preconditions"), dry_run=self._dry_run(request),
                                    propagation=opts.get("propagationPolicy") or _legacy_propagation(opts))
        if store.strategy.returns_deleted_object:
            return json_response(obj, 200)
        return json_response(_success(t.res, obj), 200)

    async def _delete_collection(self, request: web.Request, store: ObjectStore, t: Target) -> web.Response:
        if "deletecollection" not in t.res.verbs:
            raise errors.MethodNotAllowed("the server does not allow this method on the requested resource", {})
        opts = await self._delete_options(request)
        dry_run = self._dry_run(request)
        deleted = []
        for obj in store.list_objects(t.namespace, _selectors(request, t.res)):
            m = obj["metadata"]
            try:
                gone, _ = await store.delete(m.get("namespace", ""), m["name"],
                                             grace_period=opts.get("gracePeriodSeconds"), dry_run=dry_run)
            except errors.NotFound:
                continue
            deleted.append(gone)
        return json_response({"kind": t.res.list_kind, "apiVersion": t.res.api_version,
                              "metadata": {"resourceVersion": str(store.current_revision())},
                              "items": deleted})

    # ---- subresources ----
    async def _scale(self, request: web.Request, store: ObjectStore, t: Target) -> web.Response:
        from pocketkube.apiserver.patch import apply_patch

        if request.method == "GET":
            return json_response(await scale.get_scale(store, t.namespace, t.name))
        if request.method not in ("PUT", "PATCH"):
            raise errors.MethodNotAllowed("the server does not allow this method on the requested resource", {})
        body = await self._body(request)
        content_type = bodies.media_type(request.headers.get("Content-Type", "")) or JSON

        def new_scale(current: dict) -> object:
            if request.method == "PUT":
                return bodies.decode_object(content_type, body)
            return apply_patch(content_type, current, body, "Scale")
        updated = await scale.update_scale(store, t.namespace, t.name, new_scale, dry_run=self._dry_run(request))
        return json_response(updated)

    async def _bind(self, request: web.Request, store: ObjectStore, t: Target) -> web.Response:
        body = bodies.decode_object(request.headers.get("Content-Type", ""), await self._body(request))
        await binding.bind(store, t.namespace, t.name, body)
        return json_response({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                              "code": 201}, 201)

    async def _evict(self, request: web.Request, store: ObjectStore, t: Target) -> web.Response:
        from pocketkube.registry.policy import eviction

        body = bodies.decode_object(request.headers.get("Content-Type", ""), await self._body(request))
        status = await eviction.evict(store, self.registry.store("policy", "poddisruptionbudgets"), t.namespace,
                                      t.name, body, dry_run=self._dry_run(request))
        return json_response(status, 201)

    async def _log(self, request: web.Request, store: ObjectStore, t: Target) -> web.StreamResponse:
        pod = store.get(t.namespace, t.name)
        from pocketkube.apiserver.logs import serve_pod_log

        return await serve_pod_log(request, self.registry, pod)


_STREAM_LIST_ITEMS = 500  # larger lists are streamed in chunks rather than built as one body
_STREAM_CHUNK_ITEMS = 500


async def _stream_list(request: web.Request, head: bytes, items: list[bytes]) -> web.StreamResponse:
    """A large list as chunks of stored bytes: memory stays at one chunk, not the whole body
    (which a keep-alive connection would otherwise hold on to after the response)."""
    resp = web.StreamResponse(status=200, headers={"Content-Type": JSON})
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    await resp.write(head)
    for i in range(0, len(items), _STREAM_CHUNK_ITEMS):
        chunk = b",".join(items[i:i + _STREAM_CHUNK_ITEMS])
        await resp.write(chunk if i == 0 else b"," + chunk)
    await resp.write(b"]}")
    await resp.write_eof()
    return resp


def _legacy_propagation(opts: dict) -> str | None:
    """DeleteOptions.orphanDependents, the pre-propagationPolicy form some clients still send."""
    orphan = opts.get("orphanDependents")
    return None if orphan is None else ("Orphan" if orphan else "Background")


def _check_identity(obj: dict, t: Target) -> None:
    """A body may omit its name and namespace, but not name another object than the URL does."""
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        return
    name, namespace = meta.get("name"), meta.get("namespace")
    if name not in (None, "") and name != t.name:
        raise errors.BadRequest(f"the name of the object ({name}) does not match the name on the URL ({t.name})")
    if t.namespace and namespace not in (None, "") and namespace != t.namespace:
        raise errors.BadRequest(f"the namespace of the object ({namespace}) does not match the namespace on "
                                f"the URL ({t.namespace})")


def _check_preconditions(preconditions: Any) -> None:
    if preconditions is None:
        return
    if not isinstance(preconditions, dict):
        raise errors.BadRequest("error decoding DeleteOptions: preconditions must be an object")
    for key in ("uid", "resourceVersion"):
        value = preconditions.get(key)
        if value is not None and not isinstance(value, str):
            raise errors.BadRequest(f"error decoding DeleteOptions: preconditions.{key} must be a string")


def _success(res: Resource, obj: dict) -> dict:
    m = obj.get("metadata") or {}
    details = {"name": m.get("name", ""), "kind": res.plural, "uid": m.get("uid", "")}
    if res.group:
        details["group"] = res.group
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}
