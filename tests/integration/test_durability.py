"""kill -9 under a mixed write load with allocations, and a store that cannot take writes.

test_restart.py covers plain Services surviving a kill -9 under load; this file adds what it does
not: 2,000 writes of several kinds (NodePort Services with random or allocated nodePorts, type
changes that allocate and release, Leases), no write half-applied, allocators that match the
stored Services exactly after the restart (no leak, no double allocation), and a locked
database answering writes with 503 while reads go on.
"""

from __future__ import annotations

import errno
import ipaddress
import itertools
import os
import random
import shutil
import sqlite3
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from apiclient import SERVICES, Api, Reply, service

from pocketkube.testing.procs import ServerProcess
from pocketkube.testing.requires import TMPFS, require

LEASES = "/apis/coordination.k8s.io/v1/namespaces/default/leases"
SERVICE_CIDR = "127.96.0.0/24"
PORT_RANGE = (30000, 30127)
RANGES = ["--service-cidr", SERVICE_CIDR, "--service-node-port-range", f"{PORT_RANGE[0]}-{PORT_RANGE[1]}"]
CLIENTS, TOTAL_WRITES = 32, 2000
MERGE = "application/merge-patch+json"


@pytest.fixture
def server():
    root = Path(tempfile.mkdtemp(prefix="pk-durable-"))
    srv = ServerProcess(root / "data", extra_args=list(RANGES))
    srv.data_dir.mkdir()
    srv.start(port=0)
    yield srv
    srv.stop()
    shutil.rmtree(root, ignore_errors=True)


def lease(name: str, step: int) -> dict:
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": name, "labels": {"step": str(step)}, "annotations": {"step": str(step)}},
            "spec": {"holderIdentity": f"holder-{step}", "leaseDurationSeconds": step % 100 + 1}}


def stamp(step: int) -> dict:
    """The same step in two places of one object: a half-applied write would show them differing."""
    return {"labels": {"step": str(step)}, "annotations": {"step": str(step)}}


@dataclass
class Ledger:
    """What the clients were told: the last acknowledged object per path (None: deleted)."""
    acked: dict[str, dict | None] = field(default_factory=dict)
    uncertain: set[str] = field(default_factory=set)  # a write in flight when the server died
    count: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, path: str, obj: dict | None) -> None:
        with self.lock:
            self.acked[path] = obj
            self.count += 1


def service_write(api: Api, path: str, step: int, rng: random.Random) -> tuple[Reply, bool]:
    """One create / type change / delete of a Service; returns the reply and whether it deletes."""
    name = path.rsplit("/", 1)[1]
    phase = step % 4
    if phase == 0:  # NodePort: a random explicit nodePort half of the time, else allocated
        port = {"port": 80} | ({"nodePort": rng.randint(*PORT_RANGE)} if rng.random() < 0.5 else {})
        body = service(name, type="NodePort", ports=[port])
        body["metadata"].update(stamp(step))
        return api.post(SERVICES, body), False
    if phase == 1:  # back to ClusterIP: releases the nodePort in the same write
        patch = {"metadata": stamp(step), "spec": {"type": "ClusterIP", "ports": [{"port": 80}]}}
        return api.request("PATCH", path, patch, content_type=MERGE), False
    if phase == 2:  # NodePort again: allocates in an update
        patch = {"metadata": stamp(step), "spec": {"type": "NodePort"}}
        return api.request("PATCH", path, patch, content_type=MERGE), False
    return api.request("DELETE", path), True


def lease_write(api: Api, path: str, step: int) -> tuple[Reply, bool]:
    phase = step % 3
    if phase == 0:
        return api.post(LEASES, lease(path.rsplit("/", 1)[1], step)), False
    if phase == 1:
        patch = {"metadata": stamp(step), "spec": {"holderIdentity": f"holder-{step}"}}
        return api.request("PATCH", path, patch, content_type=MERGE), False
    return api.request("DELETE", path), True


def run_load(srv: ServerProcess, ledger: Ledger, budget: itertools.count, stop: threading.Event,
             index: int) -> None:
    """One client: its own Services and Leases, each cycled through its writes in order."""
    api = Api(srv, timeout=5)
    rng = random.Random(index)
    paths = [f"{SERVICES}/svc-{index}-{j}" for j in range(2)] + [f"{LEASES}/lease-{index}"]
    steps = dict.fromkeys(paths, 0)
    try:
        while next(budget) < TOTAL_WRITES and not stop.is_set():
            path = rng.choice(paths)
            step = steps[path]
            try:
                reply, deletes = (lease_write(api, path, step) if "/leases/" in path
                                  else service_write(api, path, step, rng))
            except OSError:
                with ledger.lock:
                    ledger.uncertain.add(path)
                return
            if reply.status == 422 and step % 4 == 0:
                continue  # the random nodePort was taken: rejected, nothing written; try again
            if reply.status >= 300:
                with ledger.lock:
                    ledger.uncertain.add(path)  # a dying server's answer: outcome unknown
                return
            ledger.record(path, None if deletes else reply.json())
            steps[path] = step + 1
    finally:
        api.close()


def kill_mid_load(srv: ServerProcess) -> Ledger:
    ledger, budget, stop = Ledger(), itertools.count(), threading.Event()
    threads = [threading.Thread(target=run_load, args=(srv, ledger, budget, stop, i)) for i in range(CLIENTS)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while ledger.count < TOTAL_WRITES * 3 // 4 and time.monotonic() < deadline:
        time.sleep(0.002)
    srv.kill9()
    stop.set()
    for t in threads:
        t.join(15)
    assert TOTAL_WRITES // 2 <= ledger.count < TOTAL_WRITES, f"the kill did not land mid-load: {ledger.count}"
    return ledger


def consistent(obj: dict) -> bool:
    meta = obj["metadata"]
    return meta.get("labels", {}).get("step") == meta.get("annotations", {}).get("step")


def assert_writes_survived(api: Api, ledger: Ledger) -> None:
    for path, expected in ledger.acked.items():
        reply = api.get(path)
        if path in ledger.uncertain:  # either outcome, but whole
            assert reply.status in (200, 404), path
            if reply.status == 200:
                assert consistent(reply.json()), (path, reply.json()["metadata"])
            continue
        if expected is None:
            assert reply.status == 404, (path, reply.body[:200])
            continue
        assert reply.status == 200, (path, reply.body[:200])
        assert reply.json() == expected, path  # same resourceVersion, same everything


def allocations(services: list[dict]) -> tuple[set[str], set[int]]:
    ips = {s["spec"]["clusterIP"] for s in services if s["spec"].get("clusterIP") not in (None, "None")}
    ports = [p["nodePort"] for s in services for p in s["spec"]["ports"] if "nodePort" in p]
    assert len(set(ports)) == len(ports), f"a nodePort is held twice: {sorted(ports)}"
    return ips, set(ports)


def assert_allocators_match_store(api: Api) -> None:
    """Every held IP/port is refused; every free one can be had: the allocators are the store."""
    stored = api.get(SERVICES.replace("/namespaces/default", "")).json()["items"]
    held_ips, held_ports = allocations(stored)
    assert len(held_ips) == len(stored), "a ClusterIP is held twice"
    for i, ip in enumerate(sorted(held_ips)[:10]):
        reply = api.post(SERVICES, service(f"dup-ip-{i}", clusterIP=ip))
        assert reply.status == 422 and "provided IP is already allocated" in reply.json()["message"], ip
    for i, port in enumerate(sorted(held_ports)[:10]):
        reply = api.post(SERVICES, service(f"dup-port-{i}", type="NodePort", ports=[{"port": 80, "nodePort": port}]))
        assert reply.status == 422 and "provided port is already allocated" in reply.json()["message"], port
    net = ipaddress.ip_network(SERVICE_CIDR)
    free_ips = sorted(set(map(str, list(net.hosts()))) - held_ips)
    free_ports = sorted(set(range(PORT_RANGE[0], PORT_RANGE[1] + 1)) - held_ports)
    for i, (ip, port) in enumerate(itertools.zip_longest(free_ips, free_ports)):
        spec = {"clusterIP": ip} if ip else {}
        if port:
            spec |= {"type": "NodePort", "ports": [{"port": 80, "nodePort": port}]}
        reply = api.post(SERVICES, service(f"fill-{i}", **spec))
        assert reply.status == 201, (ip, port, reply.body[:300])  # a leaked allocation would refuse it
    full = api.post(SERVICES, service("one-too-many", type="NodePort"))
    assert full.status != 201 and "range is full" in full.json()["message"], full.body[:300]


def test_acknowledged_writes_and_allocations_survive_kill9(server):
    ledger = kill_mid_load(server)
    server.start(port=0)
    api = Api(server)
    try:
        assert_writes_survived(api, ledger)
        assert_allocators_match_store(api)
    finally:
        api.close()


def assert_storage_unavailable(reply: Reply) -> None:
    assert reply.status == 503, reply.body[:300]
    status = reply.json()
    assert status["kind"] == "Status" and status["reason"] == "ServiceUnavailable", status
    assert status["message"].startswith("storage write failed: "), status


def list_revision(api: Api) -> int:
    return int(api.get(SERVICES).json()["metadata"]["resourceVersion"])


@pytest.fixture
def locked_db(server):
    """lock() holds an exclusive write lock on the server's database until unlock()."""
    conn = sqlite3.connect(server.data_dir / "state.db", isolation_level=None, timeout=10)

    class Lock:
        def lock(self) -> None:
            conn.execute("BEGIN EXCLUSIVE")

        def unlock(self) -> None:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
    yield Lock()
    Lock().unlock()
    conn.close()


def test_locked_database_fails_writes_with_503_keeps_reads_and_recovers(server, locked_db):
    api = Api(server)
    try:
        before = api.post(SERVICES, service("before")).json()
        watch_from = list_revision(api)
        locked_db.lock()
        started = time.monotonic()
        assert_storage_unavailable(api.post(SERVICES, service("while-locked")))
        assert time.monotonic() - started < 3, "a locked database should fail a write fast"
        # Only now: a background write (a lease renewal) committed just before the lock may reach
        # memory after lock() returned; the writer is one queue, so once the POST has failed, it has.
        rev = list_revision(api)
        assert_storage_unavailable(api.request("DELETE", f"{SERVICES}/before"))
        assert api.get(f"{SERVICES}/before").json() == before  # reads answer from memory meanwhile
        assert api.get(f"{SERVICES}/while-locked").status == 404  # the failed write left nothing behind
        assert list_revision(api) == rev  # nor a revision
        locked_db.unlock()
        after = api.post(SERVICES, service("after", type="NodePort"))
        assert after.status == 201, after.body[:300]
        assert int(after.json()["metadata"]["resourceVersion"]) > rev
        events = [(e["type"], e["object"]["metadata"]["name"]) for e in
                  api.watch(f"{SERVICES}?watch=1&timeoutSeconds=1&resourceVersion={watch_from}")]
        assert events == [("ADDED", "after")]
    finally:
        api.close()
    server.kill9()
    server.start(port=0)
    api = Api(server)
    try:
        assert api.get(f"{SERVICES}/after").json() == after.json()
        assert api.get(f"{SERVICES}/while-locked").status == 404
        assert int(api.post(SERVICES, service("later")).json()["metadata"]["resourceVersion"]) > \
            int(after.json()["metadata"]["resourceVersion"])
    finally:
        api.close()


def mount_tmpfs(path: Path, size: str) -> bool:
    if os.geteuid() != 0:
        return False
    path.mkdir()
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          check=False, capture_output=True).returncode == 0


def fill_disk(path: Path) -> None:
    with open(path, "wb", buffering=0) as f:  # unbuffered: nothing left to flush at close
        try:
            while True:
                f.write(b"\0" * 65536)
        except OSError as e:
            assert e.errno == errno.ENOSPC, e


def big_service(name: str) -> dict:
    body = service(name)
    body["metadata"]["annotations"] = {"filler": "x" * 8_000}
    return body


def test_full_disk_fails_writes_with_503_keeps_reads_and_recovers():
    root = Path(tempfile.mkdtemp(prefix="pk-diskfull-"))
    data = root / "data"
    if not mount_tmpfs(data, "8M"):
        shutil.rmtree(root, ignore_errors=True)
        require(False, TMPFS)
    srv = ServerProcess(data)
    try:
        srv.start(port=0)
        api = Api(srv)
        kept = api.post(SERVICES, service("kept")).json()
        fill_disk(data / "filler")
        replies = (api.post(SERVICES, big_service(f"big-{i}")) for i in range(2000))
        failed = next((r for r in replies if r.status != 201), None)
        assert failed is not None, "the disk never filled up"
        assert_storage_unavailable(failed)
        rev = list_revision(api)
        assert_storage_unavailable(api.post(SERVICES, big_service("no-room")))
        assert api.get(f"{SERVICES}/kept").json() == kept
        assert list_revision(api) == rev
        (data / "filler").unlink()
        recovered = api.post(SERVICES, big_service("room-again"))
        assert recovered.status == 201, recovered.body[:300]
        assert int(recovered.json()["metadata"]["resourceVersion"]) > rev
        api.close()
        srv.kill9()
        srv.start(port=0)
        api = Api(srv)
        assert api.get(f"{SERVICES}/room-again").json() == recovered.json()
        assert api.get(f"{SERVICES}/no-room").status == 404
        api.close()
    finally:
        srv.stop()
        subprocess.run(["umount", "-l", str(data)], check=False)
        shutil.rmtree(root, ignore_errors=True)
