"""Two API servers' registries on one etcd (Debian's etcd-server): Service creates on both at
once never share a ClusterIP or a NodePort (registry/allocators/stored.py over the etcd backend,
whose mirror lags behind the other server's writes)."""

import asyncio

import pytest

from pocketkube.api import errors
from pocketkube.registry.registry import Registry, RegistryConfig
from pocketkube.storage.etcd.backend import EtcdBackend
from pocketkube.testing.etcd import HINT, etcd_cluster, have_etcd
from pocketkube.testing.requires import requires

pytestmark = [requires(have_etcd(), HINT), pytest.mark.timeout(90)]

CONFIG = RegistryConfig(service_cidr="10.186.0.0/24", node_port_range=(30000, 30249))


@pytest.fixture(scope="module")
def cluster():
    with etcd_cluster(1) as c:
        yield c


@pytest.fixture
async def servers(cluster):
    cluster.wipe()
    backends = [EtcdBackend(cluster.spec("/")) for _ in range(2)]
    for b in backends:
        await b.start()
    yield [Registry(b, CONFIG) for b in backends]
    for b in backends:
        await b.close()


def _svc(name: str, ip: str = "") -> dict:
    spec: dict = {"type": "NodePort", "selector": {"app": name}, "ports": [{"port": 80}]}
    if ip:
        spec["clusterIP"] = ip
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": spec}


async def test_concurrent_creates_on_two_servers_never_collide(servers):
    made = await asyncio.gather(*(servers[i % 2].services.create(_svc(f"s{i}"), "default")
                                  for i in range(120)))
    assert len({s["spec"]["clusterIP"] for s in made}) == 120
    assert len({s["spec"]["ports"][0]["nodePort"] for s in made}) == 120


async def test_explicit_ip_on_both_servers_is_given_once(servers):
    a, b = servers
    results = await asyncio.gather(a.services.create(_svc("x", "10.186.0.10"), "default"),
                                   b.services.create(_svc("y", "10.186.0.10"), "default"),
                                   return_exceptions=True)
    refused = [r for r in results if isinstance(r, Exception)]
    assert len(refused) == 1 and isinstance(refused[0], errors.Invalid), results
    assert "provided IP is already allocated" in str(refused[0].status())
