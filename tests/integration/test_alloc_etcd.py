"""Two API servers' registries on one etcd (Debian's etcd-server): ClusterIPs and NodePorts are
committed through the range records (registry/allocators/stored.py over the etcd backend, whose
mirror lags behind the other server's writes), never handed out twice; the records' repair
(allocators/repair.py) keeps another server's allocation in flight and releases a true leak only
after three runs."""

import asyncio
import json

import pytest

from pocketkube.api import errors
from pocketkube.registry.allocators.stored import SERVICE_IPS_KEY, decode_record, encode_record
from pocketkube.registry.registry import Registry, RegistryConfig
from pocketkube.storage.etcd.backend import EtcdBackend
from pocketkube.testing.etcd import HINT, etcd_cluster, have_etcd
from pocketkube.testing.requires import requires
from pocketkube.testing.waits import wait_for_async

pytestmark = [pytest.mark.integration, requires(have_etcd(), HINT), pytest.mark.timeout(120)]

CIDR = "10.186.0.0/23"
CONFIG = RegistryConfig(service_cidr=CIDR, node_port_range=(30000, 30299))


@pytest.fixture(scope="module")
def cluster():
    with etcd_cluster(1) as c:
        yield c


def empty(cluster) -> None:
    """No keys and no history: a server starting replays nothing of the tests before (its
    mirror's catch-up would match the empty state of an earlier wipe; see the report)."""
    cluster.wipe()
    cluster.etcdctl("compact", str(json.loads(cluster.etcdctl("get", "x", "-w", "json"))["header"]["revision"]))


@pytest.fixture
async def servers(cluster):
    empty(cluster)
    registries = [Registry(EtcdBackend(cluster.spec("/")), CONFIG) for _ in range(2)]
    for r in registries:
        await r.start()
    yield registries
    for r in registries:
        await r.close()


def _svc(name: str, ip: str = "", node_port: int = 0) -> dict:
    port: dict = {"port": 80}
    if node_port:
        port["nodePort"] = node_port
    spec: dict = {"type": "NodePort", "selector": {"app": name}, "ports": [port]}
    if ip:
        spec["clusterIP"] = ip
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": spec}


def _ip_record(reg: Registry) -> set[int]:
    kv = reg.services._backend.get_now(SERVICE_IPS_KEY)
    return decode_record(kv.value, CIDR) if kv is not None else set()


def _offset(svc: dict) -> int:
    a, b = svc["spec"]["clusterIP"].rsplit(".", 2)[1:]
    return (int(a) - 0) * 256 + int(b) - 1


async def test_200_concurrent_creates_on_two_servers_never_collide(servers):
    made = await asyncio.gather(*(servers[i % 2].services.create(_svc(f"s{i}"), "default")
                                  for i in range(200)))
    assert len({s["spec"]["clusterIP"] for s in made}) == 200
    assert len({s["spec"]["ports"][0]["nodePort"] for s in made}) == 200


async def test_explicit_ip_and_port_on_both_servers_are_given_once(servers):
    a, b = servers
    results = await asyncio.gather(a.services.create(_svc("x", ip="10.186.0.10"), "default"),
                                   b.services.create(_svc("y", ip="10.186.0.10"), "default"),
                                   return_exceptions=True)
    refused = [r for r in results if isinstance(r, Exception)]
    assert len(refused) == 1 and isinstance(refused[0], errors.Invalid), results
    assert refused[0].code == 422
    assert "spec.clusterIPs: Invalid value" in str(refused[0].status())
    assert "provided IP is already allocated" in str(refused[0].status())
    results = await asyncio.gather(a.services.create(_svc("p", node_port=30123), "default"),
                                   b.services.create(_svc("q", node_port=30123), "default"),
                                   return_exceptions=True)
    refused = [r for r in results if isinstance(r, Exception)]
    assert len(refused) == 1 and isinstance(refused[0], errors.Invalid), results
    assert "spec.ports[0].nodePort: Invalid value: 30123: provided port is already allocated" \
        in str(refused[0].status())


async def test_delete_on_one_server_frees_the_value_for_the_other(servers):
    a, b = servers
    await a.services.create(_svc("x", ip="10.186.0.20", node_port=30020), "default")
    with pytest.raises(errors.Invalid, match="provided IP is already allocated"):
        await b.services.create(_svc("y", ip="10.186.0.20"), "default")
    await a.services.delete("default", "x")
    made = await b.services.create(_svc("y", ip="10.186.0.20", node_port=30020), "default")
    assert made["spec"]["clusterIP"] == "10.186.0.20"


async def test_a_starting_server_keeps_an_allocation_in_flight(cluster, servers):
    a, _ = servers
    backend = a.services._backend
    gate, create = asyncio.Event(), backend.create

    async def held_back(key: str, value: bytes):
        if key.startswith("/registry/services/"):
            await gate.wait()  # the record is written, the Service not yet
        return await create(key, value)

    backend.create = held_back
    pending = asyncio.create_task(a.services.create(_svc("inflight"), "default"))
    await wait_for_async(lambda: len(_ip_record(a)) == 1, timeout=10)
    (mine,) = _ip_record(a)
    late = Registry(EtcdBackend(cluster.spec("/")), CONFIG)
    try:
        assert await late.start() == []
        await late.repair_ranges()
        assert _ip_record(late) == {mine}  # two runs: flagged, not released
        made = [await late.services.create(_svc(f"l{i}"), "default") for i in range(10)]
        assert mine not in {_offset(s) for s in made}
        gate.set()
        assert _offset(await pending) == mine
        await late.repair_ranges()  # its Service is there now: no longer a leak candidate
        assert mine in _ip_record(late)
    finally:
        gate.set()
        backend.create = create
        await late.close()


async def test_a_true_leak_is_released_after_three_repair_runs(servers):
    a, b = servers
    kept = await a.services.create(_svc("kept"), "default")
    kv = await a.services._backend.get(SERVICE_IPS_KEY)
    leaked = decode_record(kv.value, CIDR) | {300}
    await a.services._backend.update(SERVICE_IPS_KEY, encode_record(CIDR, leaked), kv.mod_revision)
    for _ in range(2):
        await b.repair_ranges()
        assert _ip_record(b) == {_offset(kept), 300}
    await b.repair_ranges()
    assert _ip_record(b) == {_offset(kept)}
