"""client.servers (which server, learning from the `kubernetes` Endpoints, the kept list) and the
REST client's failover between several servers: a refused port, a 503, a fake live server."""

from __future__ import annotations

import socket

import pytest
from aiohttp import web

from pocketkube.api import errors
from pocketkube.api.resources import BY_PLURAL
from pocketkube.client.rest import Client
from pocketkube.client.servers import (
    ServerLearner,
    ServerList,
    endpoints_urls,
    load_servers,
    parse_servers,
    save_servers,
)

PODS = BY_PLURAL[("", "pods")]


def test_parse_servers_splits_commas_and_drops_repeats():
    assert parse_servers("https://a:6443, https://b:6443/,https://a:6443") == ["https://a:6443", "https://b:6443"]
    assert parse_servers(["https://a:1,https://b:2", "https://c:3"]) == ["https://a:1", "https://b:2", "https://c:3"]
    with pytest.raises(ValueError, match="must start with https://"):
        parse_servers("a:6443")
    with pytest.raises(ValueError, match="no API server"):
        parse_servers(" , ")


def test_a_failure_moves_to_the_next_server_round_the_list():
    s = ServerList(["https://a:1", "https://b:1", "https://c:1"])
    assert s.current == "https://a:1"
    assert s.failed("https://a:1") == "https://b:1"
    assert s.failed("https://a:1") == "https://b:1"  # a stale failure (a request that started on a) is ignored
    assert s.failed("https://b:1") == "https://c:1"
    assert s.failed("https://c:1") == "https://a:1"


def test_learning_adds_servers_after_the_configured_ones():
    s = ServerList(["https://a:1"])
    assert s.learn(["https://x:1", "https://y:1"])
    assert s.servers == ["https://a:1", "https://x:1", "https://y:1"]
    assert s.current == "https://a:1"
    assert not s.learn(["https://x:1", "https://y:1"])
    s.failed("https://a:1")
    assert s.current == "https://x:1"
    assert s.learn(["https://y:1", "https://a:1"])  # x left the endpoints
    assert s.servers == ["https://a:1", "https://y:1"] and s.current == "https://a:1"
    assert s.learned() == ["https://y:1", "https://a:1"]
    s.failed("https://a:1")
    assert s.learn(["https://y:1", "https://z:1"])
    assert s.current == "https://y:1"  # the one in use stays in use while listed


def test_endpoints_urls_takes_ready_addresses_on_the_https_port():
    ep = {"subsets": [{"addresses": [{"ip": "10.0.0.2"}, {"ip": "10.0.0.1"}, {"ip": "fd00::1"}],
                       "notReadyAddresses": [{"ip": "10.0.0.9"}],
                       "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}]}]}
    assert endpoints_urls(ep) == ["https://10.0.0.1:6443", "https://10.0.0.2:6443", "https://[fd00::1]:6443"]
    assert endpoints_urls({}) == [] and endpoints_urls({"subsets": [{"addresses": [{"ip": "1.2.3.4"}]}]}) == []


def test_the_list_survives_in_a_file(tmp_path):
    path = tmp_path / "api-servers.json"
    assert load_servers(path) == []
    save_servers(path, ["https://x:1", "https://y:1"])
    assert load_servers(path) == ["https://x:1", "https://y:1"]
    path.write_text("not json")
    assert load_servers(path) == []


async def test_learner_feeds_the_list_and_keeps_it(tmp_path):
    s = ServerList(["https://a:1"])
    ep = {"subsets": [{"addresses": [{"ip": "10.0.0.1"}], "ports": [{"name": "https", "port": 6443}]}]}

    async def get() -> dict:
        return ep
    learner = ServerLearner(s, get, tmp_path / "servers.json")
    assert await learner.learn_once()
    assert s.servers == ["https://a:1", "https://10.0.0.1:6443"]
    assert load_servers(tmp_path / "servers.json") == ["https://10.0.0.1:6443"]
    assert not await learner.learn_once()

    async def down() -> dict:
        raise errors.ServiceUnavailable("down")
    assert not await ServerLearner(s, down).learn_once()  # an unreachable server teaches nothing


def _refused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again: connections are refused


@pytest.fixture
async def live():
    """A fake API server: pods list and create; `/unavailable` mode answers 503."""
    state = {"unavailable": False, "hits": 0}

    async def pods(request: web.Request) -> web.Response:
        state["hits"] += 1
        if state["unavailable"]:
            return web.json_response({"kind": "Status", "code": 503, "reason": "ServiceUnavailable",
                                      "message": "down"}, status=503)
        if request.method == "POST":
            return web.json_response(await request.json(), status=201)
        return web.json_response({"kind": "PodList", "metadata": {"resourceVersion": "7"}, "items": []})
    app = web.Application()
    app.router.add_route("*", "/api/v1/namespaces/default/pods", pods)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}", state
    await runner.cleanup()


async def test_client_moves_past_a_refused_server_for_any_verb(live):
    url, state = live
    dead = f"http://127.0.0.1:{_refused_port()}"
    client = Client(f"{dead},{url}", "t")
    try:
        assert await client.list(PODS, "default") == ([], "7")
        assert client.server == url
        client.servers.failed(url)  # back to the dead one first
        assert client.server == dead
        created = await client.create(PODS, {"metadata": {"name": "p", "namespace": "default"}})
        assert created["metadata"]["name"] == "p" and client.server == url  # never reached dead: resent
    finally:
        await client.close()


async def test_a_503_moves_on_and_all_down_is_service_unavailable(live):
    url, state = live
    dead = f"http://127.0.0.1:{_refused_port()}"
    client = Client(f"{url},{dead}", "t")
    try:
        state["unavailable"] = True
        with pytest.raises(errors.ServiceUnavailable):
            await client.list(PODS, "default")  # url answers 503, dead refuses
        assert state["hits"] == 1
        state["unavailable"] = False
        assert await client.list(PODS, "default") == ([], "7")  # round the list back to url
        assert client.server == url
    finally:
        await client.close()


async def test_a_single_unreachable_server_is_service_unavailable():
    client = Client(f"http://127.0.0.1:{_refused_port()}", "t")
    try:
        with pytest.raises(errors.ServiceUnavailable, match="cannot reach the API server"):
            await client.list(PODS, "default")
    finally:
        await client.close()


async def _https_server(pki_dir) -> tuple[str, web.AppRunner, str]:
    """An HTTPS fake API server with a certificate from its own cluster CA: (url, runner, CA file)."""
    import ssl

    from pocketkube.apiserver.pki import PKI

    pki = PKI(pki_dir)
    pki.ensure(["127.0.0.1"])

    async def pods(request: web.Request) -> web.Response:
        return web.json_response({"kind": "PodList", "metadata": {"resourceVersion": "9"}, "items": []})
    app = web.Application()
    app.router.add_get("/api/v1/namespaces/default/pods", pods)
    runner = web.AppRunner(app)
    await runner.setup()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(pki.server_cert, pki.server_key)
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ctx)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return f"https://127.0.0.1:{port}", runner, str(pki.ca_cert)


async def test_a_server_of_another_cluster_is_passed_over_and_alone_is_untrusted(tmp_path):
    from pocketkube.client.rest import UntrustedServer

    ours, ours_runner, ca = await _https_server(tmp_path / "ours")
    theirs, theirs_runner, _ = await _https_server(tmp_path / "theirs")
    client = Client(f"{theirs},{ours}", "t", ca)
    alone = Client(theirs, "t", ca)
    try:
        assert await client.list(PODS, "default") == ([], "9")  # the handshake failed: nothing was sent
        assert client.server == ours
        with pytest.raises(UntrustedServer):
            await alone.list(PODS, "default")
    finally:
        await client.close()
        await alone.close()
        await ours_runner.cleanup()
        await theirs_runner.cleanup()
