"""The HTTP(S) client every component uses to talk to the API server.

Semantics are the REST ones (get/list/watch/create/update/patch/delete); errors come back as
the same ApiError classes the server raised, so a caller can `except errors.Conflict`.

With several API servers (`server` = "https://a:6443,https://b:6443" or a ServerList) it uses one
and moves to the next when that one cannot be reached or answers 503 (client/servers.py): a
request that never reached a server, or any GET, is retried on the next one at once; other
requests fail with ServiceUnavailable and their callers' retries go to the next server. A watch
that breaks is resumed by its informer from its last resourceVersion, on whichever server is
in use then.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson

from pocketkube.api import errors
from pocketkube.api.resources import Resource
from pocketkube.api.status import from_status
from pocketkube.client.interface import JSON_PATCH, MERGE_PATCH, STRATEGIC_PATCH
from pocketkube.client.servers import ServerList, parse_servers

__all__ = ["JSON_PATCH", "MERGE_PATCH", "STRATEGIC_PATCH", "Client", "UntrustedServer", "resource_path"]


CONNECT_TIMEOUT = 10.0  # a server that does not answer a SYN: try the next one before the request's deadline


class UntrustedServer(errors.ApiError):
    """The server's certificate does not verify against our CA: retrying will not help."""
    code, reason = 495, "UntrustedServer"


def resource_path(res: Resource, namespace: str = "", name: str = "", subresource: str = "") -> str:
    path = res.prefix
    if res.namespaced and namespace:
        path += f"/namespaces/{quote(namespace)}"
    path += f"/{res.plural}"
    if name:
        path += f"/{quote(name)}"
    if subresource:
        path += f"/{subresource}"
    return path


class Client:
    """The HTTP implementation of pocketkube.client.interface.Client."""

    def __init__(self, server: str | ServerList, token: str, ca_file: str | None = None, *,
                 user_agent: str = "pocketkube", timeout: float = 30.0,
                 cert_file: str | None = None, key_file: str | None = None) -> None:
        self.servers = server if isinstance(server, ServerList) else ServerList(parse_servers(server))
        self._token = token
        self._ca_file = ca_file
        # A client certificate (a joined node's, from its CSR) authenticates instead of a token.
        self._cert = (cert_file, key_file) if cert_file and key_file else None
        self._user_agent = user_agent
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    @property
    def server(self) -> str:
        """The API server in use."""
        return self.servers.current

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            ctx: ssl.SSLContext | bool = False
            if any(s.startswith("https") for s in (*self.servers.servers, *self.servers.configured)):
                ctx = ssl.create_default_context(cafile=self._ca_file)
                if self._cert is not None:
                    ctx.load_cert_chain(*self._cert)
            headers = {"User-Agent": self._user_agent, "Accept": "application/json"}
            if self._token:
                headers["Authorization"] = f"Bearer {self._token}"
            self._session = aiohttp.ClientSession(
                headers=headers,
                connector=aiohttp.TCPConnector(ssl=ctx, limit=64),
                json_serialize=lambda o: orjson.dumps(o).decode())
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def reload_credentials(self) -> None:
        """Use the certificate files anew (a rotated client certificate): the next request opens a
        new session; open watches end and their informers watch again."""
        await self.close()

    async def request(self, method: str, path: str, *, params: dict | None = None, body: Any = None,
                      content_type: str = "application/json", timeout: float | None = None) -> Any:
        data = body if isinstance(body, (bytes, type(None))) else orjson.dumps(body)
        headers = {"Content-Type": content_type} if data is not None else None
        total = timeout or self._timeout
        for attempt in range(len(self.servers.servers)):
            server = self.server
            last = attempt == len(self.servers.servers) - 1
            try:
                async with self.session.request(
                        method, server + path, params=params, data=data, headers=headers,
                        timeout=aiohttp.ClientTimeout(total=total, sock_connect=min(total, CONNECT_TIMEOUT))) as resp:
                    raw = await resp.read()
                    if resp.status == 503:
                        self.servers.failed(server)
                        if method == "GET" and not last:
                            continue
                    if resp.status >= 400:
                        raise from_status(resp.status, _json_or_none(raw))
                    if resp.content_type == "application/json":
                        return orjson.loads(raw) if raw else None
                    return raw
            except aiohttp.ClientSSLError as e:
                # Nothing was sent (the handshake failed): a stale address may be someone else's now.
                self.servers.failed(server)
                if last:
                    raise UntrustedServer(f"the API server at {server} failed TLS verification: {e}") from None
            except aiohttp.ClientConnectorError as e:  # never reached it: safe to send elsewhere
                self.servers.failed(server)
                if last:
                    raise errors.ServiceUnavailable(f"cannot reach the API server at {server}: {e}") from None
            except (TimeoutError, aiohttp.ClientConnectionError) as e:
                self.servers.failed(server)
                if last or method != "GET":
                    raise errors.ServiceUnavailable(f"cannot reach the API server at {server}: {e}") from None
        raise errors.ServiceUnavailable("no API server to send the request to")

    # ---- verbs ----
    async def get(self, res: Resource, namespace: str, name: str, subresource: str = "") -> dict:
        return await self.request("GET", resource_path(res, namespace, name, subresource))

    async def list(self, res: Resource, namespace: str = "", label_selector: str = "",
                   field_selector: str = "") -> tuple[list[dict], str]:
        params = {k: v for k, v in (("labelSelector", label_selector), ("fieldSelector", field_selector)) if v}
        body = await self.request("GET", resource_path(res, namespace), params=params)
        return body.get("items") or [], body["metadata"].get("resourceVersion", "")

    async def watch(self, res: Resource, namespace: str = "", resource_version: str = "",
                    label_selector: str = "", field_selector: str = "",
                    timeout_seconds: int | None = None) -> AsyncIterator[tuple[str, dict]]:
        params = {"watch": "true", "allowWatchBookmarks": "true"}
        for k, v in (("resourceVersion", resource_version), ("labelSelector", label_selector),
                     ("fieldSelector", field_selector)):
            if v:
                params[k] = v
        if timeout_seconds:
            params["timeoutSeconds"] = str(timeout_seconds)
        server = self.server
        try:
            async with self.session.get(server + resource_path(res, namespace), params=params,
                                        timeout=aiohttp.ClientTimeout(total=None, sock_connect=10)) as resp:
                if resp.status == 503:
                    self.servers.failed(server)
                if resp.status >= 400:
                    raise from_status(resp.status, _json_or_none(await resp.read()))
                async for line in resp.content:
                    if not line.strip():
                        continue
                    ev = orjson.loads(line)
                    if ev.get("type") == "ERROR":
                        obj = ev.get("object") or {}
                        raise from_status(int(obj.get("code") or 500), obj)
                    yield ev["type"], ev["object"]
        except aiohttp.ClientSSLError as e:
            raise UntrustedServer(f"the API server at {server} failed TLS verification: {e}") from None
        except (TimeoutError, aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as e:
            # The informer resumes from its last resourceVersion, on the next server.
            self.servers.failed(server)
            raise errors.ServiceUnavailable(f"watch of {res.plural} interrupted: {e}") from None

    async def create(self, res: Resource, obj: dict, namespace: str = "") -> dict:
        ns = namespace or (obj.get("metadata") or {}).get("namespace", "")
        return await self.request("POST", resource_path(res, ns), body=obj)

    async def create_subresource(self, res: Resource, namespace: str, name: str, subresource: str,
                                 body: dict) -> dict:
        return await self.request("POST", resource_path(res, namespace, name, subresource), body=body)

    async def update(self, res: Resource, obj: dict, subresource: str = "") -> dict:
        m = obj["metadata"]
        return await self.request("PUT", resource_path(res, m.get("namespace", ""), m["name"], subresource),
                                  body=obj)

    async def update_status(self, res: Resource, obj: dict) -> dict:
        return await self.update(res, obj, "status")

    async def patch(self, res: Resource, namespace: str, name: str, patch: Any,
                    content_type: str = MERGE_PATCH, subresource: str = "") -> dict:
        return await self.request("PATCH", resource_path(res, namespace, name, subresource), body=patch,
                                  content_type=content_type)

    async def delete(self, res: Resource, namespace: str, name: str, grace_period: int | None = None,
                     propagation: str | None = None, preconditions: dict | None = None) -> Any:
        opts: dict[str, Any] = {}
        if grace_period is not None:
            opts["gracePeriodSeconds"] = grace_period
        if propagation:
            opts["propagationPolicy"] = propagation
        if preconditions:
            opts["preconditions"] = preconditions
        return await self.request("DELETE", resource_path(res, namespace, name), body=opts or None)

    async def bind(self, namespace: str, pod: str, node: str) -> None:
        from pocketkube.api.resources import BY_PLURAL

        await self.request("POST", resource_path(BY_PLURAL[("", "pods")], namespace, pod, "binding"), body={
            "apiVersion": "v1", "kind": "Binding", "metadata": {"name": pod, "namespace": namespace},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node}})


def _json_or_none(raw: bytes) -> dict | None:
    try:
        v = orjson.loads(raw)
        return v if isinstance(v, dict) else None
    except orjson.JSONDecodeError:
        return {"message": raw[:500].decode(errors="replace")}
