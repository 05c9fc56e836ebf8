"""Probes against a real local HTTP server, a closed port and real commands; threshold counting."""

from __future__ import annotations

import asyncio
import socket

import pytest
from aiohttp import web

from pocketkube.agent.probes import ProbeResult, ProbeTarget, ProbeWorker, resolve_port, run_probe
from pocketkube.agent.runtime.process import ProcessRuntime


@pytest.fixture
async def http_server():
    async def handler(request: web.Request) -> web.Response:
        if request.path == "/slow":
            await asyncio.sleep(0.5)  # on purpose: a server slower than the probe's timeout
        status = int(request.query.get("status", "200"))
        return web.Response(status=status, text=request.headers.get("X-Probe", "ok"))

    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    yield port
    await runner.cleanup()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _target(container: dict | None = None) -> ProbeTarget:
    return ProbeTarget("127.0.0.1", container or {"name": "c"})


async def test_http_get_success_and_status_failure(http_server):
    assert (await run_probe({"httpGet": {"path": "/healthz", "port": http_server}}, _target())).success
    redirect_ok = await run_probe({"httpGet": {"path": "/?status=302", "port": http_server}}, _target())
    assert redirect_ok.success
    bad = await run_probe({"httpGet": {"path": "/?status=500", "port": http_server}}, _target())
    assert bad == ProbeResult(False, "HTTP probe failed with statuscode: 500")


async def test_http_get_named_port_and_host(http_server):
    container = {"name": "c", "ports": [{"name": "http", "containerPort": http_server}]}
    probe = {"httpGet": {"path": "/", "port": "http", "host": "127.0.0.1"}}
    assert (await run_probe(probe, ProbeTarget("127.9.9.9", container))).success


async def test_http_get_connection_refused_and_timeout(http_server):
    port = _free_port()
    refused = await run_probe({"httpGet": {"path": "/", "port": port}}, _target())
    assert refused.message == f'Get "http://127.0.0.1:{port}/": dial tcp 127.0.0.1:{port}: connect: connection refused'
    slow = await run_probe({"httpGet": {"path": "/slow", "port": http_server}, "timeoutSeconds": 0.2}, _target())
    assert not slow.success and "context deadline exceeded" in slow.message


async def test_tcp_socket():
    port = _free_port()
    assert not (await run_probe({"tcpSocket": {"port": port}}, _target())).success
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        assert (await run_probe({"tcpSocket": {"port": port}}, _target())).success


async def test_exec_probe_uses_the_container_env_and_dir(tmp_path):
    rt = ProcessRuntime(tmp_path)
    cdir = rt.container_dir("p", "c")
    cdir.mkdir(parents=True)
    env = {"PATH": "/usr/bin:/bin", "WANT": "yes"}
    target = ProbeTarget("127.0.0.1", {"name": "c"},
                         exec=lambda argv, timeout: rt.exec_sync("p", "c", argv, env=env, user=None, timeout=timeout))
    (cdir / "ready").write_text("")
    ok = await run_probe({"exec": {"command": ["sh", "-c", 'test "$WANT" = yes && test -f ready']}}, target)
    assert ok.success
    bad = await run_probe({"exec": {"command": ["sh", "-c", "echo not ready; exit 1"]}}, target)
    assert bad == ProbeResult(False, "not ready")
    slow = await run_probe({"exec": {"command": ["sleep", "5"]}, "timeoutSeconds": 0.2}, target)
    assert not slow.success and "timed out" in slow.message
    missing = await run_probe({"exec": {"command": ["no-such-command-here"]}}, target)
    assert not missing.success and missing.message.startswith('exec: "no-such-command-here"')
    no_exec = await run_probe({"exec": {"command": ["true"]}}, ProbeTarget("127.0.0.1", {"name": "c"}))
    assert not no_exec.success


def test_resolve_port():
    assert resolve_port(80, {}) == 80 and resolve_port("8080", {}) == 8080
    with pytest.raises(ValueError):
        resolve_port("web", {"ports": [{"name": "http", "containerPort": 80}]})


async def test_worker_thresholds_and_failure_events():
    results = iter([False, True, True, False, False, False, True])
    changes: list[tuple[str, bool]] = []
    failures: list[str] = []

    async def fake_probe(probe: dict, target: ProbeTarget) -> ProbeResult:
        return ProbeResult(next(results), "boom")

    probe = {"exec": {"command": ["x"]}, "periodSeconds": 0.001, "successThreshold": 2, "failureThreshold": 3}
    w = ProbeWorker("readiness", probe, _target(), lambda k, ok: changes.append((k, ok)),
                    lambda k, m: failures.append(m), probe_fn=fake_probe)
    task = asyncio.create_task(w.run())
    for _ in range(200):
        if len(changes) >= 2:
            break
        await asyncio.sleep(0.005)
    task.cancel()
    # ready after 2 successes in a row, unready after 3 failures in a row
    assert changes[:2] == [("readiness", True), ("readiness", False)]
    assert failures[0] == "Readiness probe failed: boom"


async def test_failed_liveness_probe_reports_once_and_stops():
    changes: list[bool] = []

    async def failing(probe: dict, target: ProbeTarget) -> ProbeResult:
        return ProbeResult(False, "dead")

    w = ProbeWorker("liveness", {"periodSeconds": 0.001, "failureThreshold": 2}, _target(),
                    lambda k, ok: changes.append(ok), lambda k, m: None, probe_fn=failing)
    await asyncio.wait_for(w.run(), 2)
    assert changes == [False]
