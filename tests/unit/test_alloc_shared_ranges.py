"""ClusterIPs and NodePorts committed through the store (registry/allocators/stored.py): two
Registries on one backend are two API servers on one store; they never hand out a value twice.
The SQLite backend stands in for a shared store here (`shared = True`, as etcd's); as itself
(one server owns it) it never gets range records."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from pocketkube.api import errors
from pocketkube.registry.allocators.repair import LEAK_RUNS, repair_record
from pocketkube.registry.allocators.stored import (
    NODE_PORTS_KEY,
    SERVICE_IPS_KEY,
    decode_bits,
    decode_record,
    encode_bits,
    encode_record,
    merge,
)
from pocketkube.registry.registry import Registry, RegistryConfig
from pocketkube.storage.sqlite import SQLiteBackend

# Small ranges, so that random picks by two servers collide often.
CONFIG = RegistryConfig(service_cidr="10.186.0.0/24", node_port_range=(30000, 30249))


@pytest.fixture
async def backend(tmp_path):
    b = SQLiteBackend(str(tmp_path / "state.db"))
    b.shared = True  # as the etcd backend: several API servers write it
    await b.start()
    yield b
    await b.close()


def _svc(name: str, *, ip: str = "", kind: str = "NodePort") -> dict:
    spec: dict = {"type": kind, "selector": {"app": name}, "ports": [{"port": 80}]}
    if ip:
        spec["clusterIP"] = ip
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": spec}


def _record(backend, key: str, range_str: str) -> set[int]:
    kv = backend.get_now(key)
    return decode_record(kv.value, range_str) if kv is not None else set()


# ---- the record ----

def test_bitmap_round_trips_as_upstream_big_int():
    assert encode_bits({0, 9}) == (1 << 9 | 1).to_bytes(2, "big")
    assert encode_bits(set()) == b""
    for bits in ({0}, {7, 8, 200}, set(range(0, 300, 7))):
        assert decode_bits(encode_bits(bits)) == bits


def test_record_of_another_range_is_empty():
    value = encode_record("10.0.0.0/24", {1, 2})
    assert orjson.loads(value)["kind"] == "RangeAllocation"
    assert decode_record(value, "10.0.0.0/24") == {1, 2}
    assert decode_record(value, "10.1.0.0/24") == set()
    assert decode_record(b"not json", "10.0.0.0/24") == set()


def test_merge_keeps_ours_follows_theirs_and_reports_collisions():
    seen = {1, 2, 3}
    view = {1, 3, 4, 5}  # released 2, allocated 4 and 5
    fresh = {1, 2, 3, 5, 6}  # another server took 5 and 6
    new_view, lost = merge(view, seen, fresh)
    assert new_view == {1, 3, 4, 5, 6}
    assert lost == {5}


# ---- two API servers on one store ----

async def test_concurrent_creates_on_two_servers_never_collide(backend):
    a, b = Registry(backend, CONFIG), Registry(backend, CONFIG)

    async def create(reg: Registry, i: int) -> dict:
        return await reg.services.create(_svc(f"s{i}"), "default")

    made = await asyncio.gather(*(create(a if i % 2 else b, i) for i in range(200)))
    ips = [s["spec"]["clusterIP"] for s in made]
    ports = [s["spec"]["ports"][0]["nodePort"] for s in made]
    assert len(set(ips)) == 200 and len(set(ports)) == 200
    # The records hold exactly what the Services hold, and both servers see all of it.
    ip_offsets = {int(ip.rsplit(".", 1)[1]) - 1 for ip in ips}
    assert _record(backend, SERVICE_IPS_KEY, "10.186.0.0/24") == ip_offsets
    assert _record(backend, NODE_PORTS_KEY, "30000-30249") == {p - 30000 for p in ports}
    for reg in (a, b):
        reg.allocator._refresh()
        assert reg.allocator.used_cluster_ips() == 200 and reg.allocator.used_node_ports() == 200


async def test_explicit_ip_requested_on_both_servers_is_given_once(backend):
    a, b = Registry(backend, CONFIG), Registry(backend, CONFIG)
    results = await asyncio.gather(a.services.create(_svc("x", ip="10.186.0.10"), "default"),
                                   b.services.create(_svc("y", ip="10.186.0.10"), "default"),
                                   return_exceptions=True)
    refused = [r for r in results if isinstance(r, Exception)]
    assert len(refused) == 1 and isinstance(refused[0], errors.Invalid)
    assert refused[0].code == 422
    assert "spec.clusterIPs: Invalid value" in str(refused[0].status())
    assert "failed to allocate IP 10.186.0.10: provided IP is already allocated" in str(refused[0].status())


async def test_an_ip_taken_on_one_server_is_refused_on_the_other(backend):
    a, b = Registry(backend, CONFIG), Registry(backend, CONFIG)
    await a.services.create(_svc("x", ip="10.186.0.20"), "default")
    with pytest.raises(errors.Invalid, match="provided IP is already allocated"):
        await b.services.create(_svc("y", ip="10.186.0.20"), "default")
    # Deleted through the other server: released in the record, free again for the first.
    await b.services.delete("default", "x")
    await b.allocator.flush()
    assert 19 not in _record(backend, SERVICE_IPS_KEY, "10.186.0.0/24")
    await a.services.create(_svc("z", ip="10.186.0.20"), "default")


async def test_type_change_releases_node_port_in_the_record(backend):
    a, b = Registry(backend, CONFIG), Registry(backend, CONFIG)
    svc = await a.services.create(_svc("x"), "default")
    port = svc["spec"]["ports"][0]["nodePort"]

    def to_cluster_ip(obj: dict) -> dict:
        obj["spec"]["type"] = "ClusterIP"
        obj["spec"]["ports"][0].pop("nodePort", None)
        return obj

    await a.services.guaranteed_update("default", "x", to_cluster_ip)
    await a.allocator.flush()
    assert _record(backend, NODE_PORTS_KEY, "30000-30249") == set()
    made = await b.services.create({**_svc("y"), "spec": {**_svc("y")["spec"],
                                                          "ports": [{"port": 80, "nodePort": port}]}}, "default")
    assert made["spec"]["ports"][0]["nodePort"] == port


# ---- the repair ----

def test_repair_marks_held_values_and_counts_leaks():
    record, held = {1, 2, 3}, {2, 3, 4}
    new, leaks = repair_record(record, held, {})
    assert new == {1, 2, 3, 4} and leaks == {1: 1}  # 4 marked; 1 kept, flagged once
    new, leaks = repair_record(new, held, leaks)
    assert new == {1, 2, 3, 4} and leaks == {1: 2}
    new, leaks = repair_record(new, held, leaks)
    assert LEAK_RUNS == 3 and new == {2, 3, 4} and leaks == {}  # released on the third run


def test_repair_counts_only_consecutive_leaks():
    _, leaks = repair_record({1, 2}, {2}, {})
    _, leaks = repair_record({1, 2}, {2}, leaks)
    _, leaks = repair_record({1, 2}, {1, 2}, leaks)  # its Service showed up (was in flight)
    assert leaks == {}
    new, leaks = repair_record({1, 2}, {2}, leaks)
    assert new == {1, 2} and leaks == {1: 1}  # counted from one again


async def _leak(backend, offset: int) -> None:
    """A value in the record no Service holds (a server died between the two writes)."""
    kv = backend.get_now(SERVICE_IPS_KEY)
    value = _record(backend, SERVICE_IPS_KEY, "10.186.0.0/24") | {offset}
    await backend.update(SERVICE_IPS_KEY, encode_record("10.186.0.0/24", value), kv.mod_revision)


async def test_a_leak_is_released_after_three_repair_runs_not_before(backend):
    a = Registry(backend, CONFIG)
    kept = await a.services.create(_svc("kept"), "default")
    offset = int(kept["spec"]["clusterIP"].rsplit(".", 1)[1]) - 1
    await _leak(backend, 200)
    b = Registry(backend, CONFIG)
    assert b.repair() == []
    assert await b.repair_ranges() == []  # start() runs the first
    assert 200 in b.allocator.ips.bits.indices()  # not handed out meanwhile
    await b.repair_ranges()
    assert _record(backend, SERVICE_IPS_KEY, "10.186.0.0/24") == {offset, 200}
    await b.repair_ranges()
    assert _record(backend, SERVICE_IPS_KEY, "10.186.0.0/24") == {offset}
    assert 200 not in b.allocator.ips.bits.indices()
    a.allocator._refresh()
    assert 200 not in a.allocator.ips.bits.indices()  # free for every server


async def test_a_starting_server_keeps_an_allocation_in_flight(backend):
    a = Registry(backend, CONFIG)
    # A's create has written the record, not yet the Service (upstream's window).
    txn = a.allocator.allocate_for_create(_svc("x"))
    await txn.persist()
    b = Registry(backend, CONFIG)
    b.repair()
    await b.repair_ranges()
    ip_offsets = _record(backend, SERVICE_IPS_KEY, "10.186.0.0/24")
    assert len(ip_offsets) == 1  # not released by B's repair
    mine = next(iter(ip_offsets))
    made = [await b.services.create(_svc(f"b{i}"), "default") for i in range(20)]
    assert all(int(s["spec"]["clusterIP"].rsplit(".", 1)[1]) - 1 != mine for s in made)


async def test_repair_marks_a_value_the_record_lacks(backend):
    a = Registry(backend, CONFIG)
    made = await a.services.create(_svc("x"), "default")
    port = made["spec"]["ports"][0]["nodePort"]
    kv = backend.get_now(NODE_PORTS_KEY)
    await backend.update(NODE_PORTS_KEY, encode_record("30000-30249", set()), kv.mod_revision)
    await a.repair_ranges()
    assert _record(backend, NODE_PORTS_KEY, "30000-30249") == {port - 30000}


async def test_repair_reports_collisions_and_values_out_of_range(backend):
    a = Registry(backend, CONFIG)
    await a.services.create(_svc("x", ip="10.186.0.10"), "default")
    wide = Registry(backend, RegistryConfig(service_cidr="10.186.0.0/16", node_port_range=(30000, 30249)))
    await wide.services.create(_svc("y", ip="10.186.0.10"), "other")  # another range's record
    await wide.services.create(_svc("z", ip="10.186.1.10"), "other")
    problems = await a.repair_ranges()
    assert any("service other/y: Cluster IP 10.186.0.10 was assigned to multiple services" in p
               for p in problems), problems
    assert any("service other/z: Cluster IP 10.186.1.10 is not within the service CIDR 10.186.0.0/24" in p
               for p in problems), problems


async def test_sqlite_alone_never_writes_range_records(tmp_path):
    sqlite = SQLiteBackend(str(tmp_path / "own.db"))
    reg = Registry(sqlite, CONFIG)
    await reg.start()
    try:
        assert not reg.allocator.shared
        await reg.services.create(_svc("x"), "default")
        await reg.services.create(_svc("y", ip="10.186.0.7"), "default")
        await reg.services.delete("default", "x")
        assert await reg.repair_ranges() == []
        assert sqlite.range_now("/registry/ranges/") == []
        with pytest.raises(errors.Invalid, match="provided IP is already allocated"):
            await reg.services.create(_svc("z", ip="10.186.0.7"), "default")
    finally:
        await reg.close()


async def test_every_server_repairs_periodically(backend, tmp_path, monkeypatch):
    from pocketkube.apiserver.app import RANGE_REPAIR_INTERVAL_ENV, APIServer, ServerConfig
    from pocketkube.testing.waits import wait_for_async

    monkeypatch.setenv(RANGE_REPAIR_INTERVAL_ENV, "0.05")
    a = Registry(backend, CONFIG)
    kept = await a.services.create(_svc("kept"), "default")
    offset = int(kept["spec"]["clusterIP"].rsplit(".", 1)[1]) - 1
    await _leak(backend, 100)
    loop = asyncio.create_task(APIServer(ServerConfig(data_dir=tmp_path / "data"), a)._range_repair_loop())
    try:
        await wait_for_async(lambda: _record(backend, SERVICE_IPS_KEY, "10.186.0.0/24") == {offset}, timeout=10)
    finally:
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)
