"""An API server keeps its master lease and lists every live server in the `kubernetes`
endpoints: another server's lease (written as that server would) appears there, and is removed
once it stops being renewed; a clean stop removes the server's own lease."""

from __future__ import annotations

from pocketkube.apiserver import app as app_module
from pocketkube.apiserver.app import ServerConfig
from pocketkube.registry.masterleases import MASTER_LEASES_PREFIX
from pocketkube.server import api_server
from pocketkube.storage.sqlite import SQLiteBackend
from pocketkube.testing.waits import wait_for_async


async def test_endpoints_follow_the_live_master_leases(tmp_path, monkeypatch):
    monkeypatch.setattr(app_module, "BOOTSTRAP_INTERVAL", 0.1)
    server = api_server(ServerConfig(data_dir=tmp_path / "data", port=0))
    await server.start()
    try:
        leases = server.registry.master_leases
        leases.ttl = 3.0  # short, but long enough to see the second server listed on a busy host
        endpoints = server.registry.store("", "endpoints")

        def ips() -> list[str]:
            ep = endpoints.get("default", "kubernetes")
            return [a["ip"] for a in ep["subsets"][0]["addresses"]]
        assert ips() == ["127.0.0.1"]
        assert await leases.backend.get(MASTER_LEASES_PREFIX + "127.0.0.1") is not None
        await leases.renew("127.216.0.2", server.port)  # a second server on the same port
        slices = server.registry.store("discovery.k8s.io", "endpointslices")

        def slice_ips() -> list[str]:
            return [e["addresses"][0] for e in slices.get("default", "kubernetes")["endpoints"]]
        # The Endpoints and the EndpointSlice are two writes: wait for both.
        await wait_for_async(lambda: ips() == slice_ips() == ["127.0.0.1", "127.216.0.2"], timeout=5,
                             what="the second server in the kubernetes endpoints and slice")
        # It stops renewing: gone after the TTL (3 s here), and so is its key.
        await wait_for_async(lambda: ips() == ["127.0.0.1"], timeout=5, what="the dead server removed")
        assert await leases.backend.get(MASTER_LEASES_PREFIX + "127.216.0.2") is None
    finally:
        await server.stop()
    store = SQLiteBackend(str(tmp_path / "data" / "state.db"))
    await store.start()
    try:
        assert await store.get(MASTER_LEASES_PREFIX + "127.0.0.1") is None  # left cleanly
    finally:
        await store.close()
