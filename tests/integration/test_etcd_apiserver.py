"""`pocketkube server --datastore etcd://...`: objects under /registry/ in etcd, a value over
etcd's request limit answered 413, and two of three members down: writes get a quick 503 with
Retry-After while reads from the server's mirror go on, and writes work again after recovery."""

import time

import pytest

from pocketkube.testing.etcd import HINT, etcd_cluster, have_etcd
from pocketkube.testing.procs import ServerProcess
from pocketkube.testing.requires import requires

pytestmark = [requires(have_etcd(), HINT), pytest.mark.slow, pytest.mark.timeout(120)]
CMS = "/api/v1/namespaces/default/configmaps"


def cm(name: str, data: str = "v") -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": data}}


@pytest.fixture
def etcd():
    with etcd_cluster(3) as c:
        yield c


@pytest.fixture
def server(etcd, tmp_path):
    s = ServerProcess(tmp_path / "data", extra_args=["--no-control-plane", "--datastore", etcd.url])
    s.data_dir.mkdir()
    s.start(timeout=60)
    yield s
    s.stop()


def test_objects_live_in_etcd(etcd, server, api):
    r = api.post(CMS, cm("one"))
    assert r.status == 201, r.body
    rv = r.json()["metadata"]["resourceVersion"]
    got = api.get(CMS + "/one").json()
    assert got["metadata"]["resourceVersion"] == rv
    keys = etcd.etcdctl("get", "--prefix", "/registry/", "--keys-only").split()
    assert any(k.endswith("/default/one") and "configmaps" in k for k in keys), keys
    listed = api.get(CMS).json()
    assert int(listed["metadata"]["resourceVersion"]) >= int(rv)
    # Over etcd's 1.5 MiB request limit, under the API server's body limit and validation's.
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "big"},
           "spec": {"containers": [{"name": "c", "image": "busybox",
                                    "env": [{"name": "E", "value": "x" * (2 * 1024 * 1024)}]}]}}
    big = api.post("/api/v1/namespaces/default/pods", pod)
    assert big.status == 413 and big.json()["reason"] == "RequestEntityTooLarge", big.body[:300]


def test_quorum_loss_is_a_quick_503_and_reads_go_on(etcd, server, api):
    assert api.post(CMS, cm("before")).status == 201
    etcd.kill(0)
    etcd.kill(1)
    t = time.monotonic()
    r = api.post(CMS, cm("during"))
    assert r.status == 503 and r.header_values("Retry-After") == ["1"], (r.status, r.body[:300])
    assert time.monotonic() - t < 15
    assert api.get(CMS + "/before").status == 200
    etcd.start_member(0)
    etcd.start_member(1)
    etcd.wait_leader()
    deadline = time.monotonic() + 20
    while (r := api.post(CMS, cm("after"))).status == 503 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert r.status == 201, r.body


def test_tls_datastore_from_the_environment(tmp_path, monkeypatch, connect):
    with etcd_cluster(3, tls=True) as etcd:
        f = etcd.tls_files
        # The URL from the environment (out of `ps`), the TLS files as flags (k3s' names).
        monkeypatch.setenv("POCKETKUBE_DATASTORE_ENDPOINT",
                           ",".join(f"https://127.0.0.1:{p}" for p in etcd.client_ports))
        s = ServerProcess(tmp_path / "data", extra_args=[
            "--no-control-plane", "--datastore-cafile", f.cafile, "--datastore-certfile", f.certfile,
            "--datastore-keyfile", f.keyfile])
        s.data_dir.mkdir()
        s.start(timeout=60)
        try:
            assert connect(s).post(CMS, cm("secure")).status == 201
            assert "secure" in etcd.etcdctl("get", "--prefix", "/registry/", "--keys-only")
        finally:
            s.stop()


async def test_leader_killed_under_32_api_writers(etcd, server):
    """No acknowledged create is lost and no 5xx reaches a client when the etcd leader dies:
    the election happens within the store's retry budget."""
    import asyncio
    import ssl

    import aiohttp

    ctx = ssl.create_default_context(cafile=str(server.ca_file))
    acked: list[str] = []
    failures: list[int] = []
    stop = asyncio.Event()
    async with aiohttp.ClientSession(base_url=server.url, headers={"Authorization": f"Bearer {server.token()}"},
                                     connector=aiohttp.TCPConnector(ssl=ctx, limit=64)) as session:
        async def writer(w: int) -> None:
            i = 0
            while not stop.is_set():
                name = f"w{w}-{i}"
                i += 1
                async with session.post(CMS, json=cm(name)) as r:
                    await r.read()
                    if r.status == 201:
                        acked.append(name)
                    else:
                        failures.append(r.status)

        tasks = [asyncio.create_task(writer(w)) for w in range(32)]
        while len(acked) < 100:
            await asyncio.sleep(0.05)
        leader = await asyncio.to_thread(etcd.leader)
        await asyncio.to_thread(etcd.kill, leader)
        before = len(acked)
        deadline = asyncio.get_running_loop().time() + 30
        while len(acked) < before + 200 and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.1)
        stop.set()
        await asyncio.gather(*tasks)
        assert failures == [], failures[:10]
        async with session.get(CMS) as r:
            names = {item["metadata"]["name"] for item in (await r.json())["items"]}
    assert len(acked) >= before + 200 and set(acked) <= names
    stored = etcd.etcdctl("get", "--prefix", "/registry/", "--keys-only", members=etcd.alive())
    assert all(f"/default/{name}" in stored for name in acked)
