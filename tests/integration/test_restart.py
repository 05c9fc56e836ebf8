"""Objects, resourceVersions, allocations and watch history survive a clean restart and a kill -9."""

from __future__ import annotations

import itertools
import shutil
import tempfile
import threading
import time
from pathlib import Path

import pytest
from apiclient import DEPLOYMENTS, PODS, SERVICES, Api, deployment, pod, service

from pocketkube.testing.procs import ServerProcess

# Small ranges, so that an allocator that forgot its state after a restart would collide at once.
SMALL_RANGES = ["--service-cidr", "127.96.0.0/27", "--service-node-port-range", "30100-30120"]


@pytest.fixture
def start_server():
    """start_server(*args) -> a new server on its own data dir; stopped at the end of the test."""
    started: list[ServerProcess] = []
    root = Path(tempfile.mkdtemp(prefix="pk-restart-"))

    def start(*args: str) -> ServerProcess:
        srv = ServerProcess(root / f"data{len(started)}", extra_args=list(args))
        srv.data_dir.mkdir()
        started.append(srv.start(port=0))
        return srv
    yield start
    for srv in started:
        srv.stop()
    shutil.rmtree(root, ignore_errors=True)


def restart(srv: ServerProcess, how: str) -> None:
    srv.kill9() if how == "kill9" else srv.stop()
    srv.start(port=0)


def created(api: Api, path: str, body: dict) -> dict:
    reply = api.post(path, body)
    assert reply.status == 201, reply.body[:400]
    return reply.json()


def identity(obj: dict) -> tuple[str, str]:
    return obj["metadata"]["uid"], obj["metadata"]["resourceVersion"]


def node_ports(svc: dict) -> list[int]:
    return [p["nodePort"] for p in svc["spec"]["ports"] if "nodePort" in p]


def watch_events(api: Api, query: str) -> list[tuple[str, str, str]]:
    return [(ev["type"], ev["object"]["metadata"].get("name"), ev["object"]["metadata"]["resourceVersion"])
            for ev in api.watch(f"{SERVICES}?watch=1&timeoutSeconds=1&{query}")]


@pytest.mark.parametrize("how", ["clean", "kill9"])
def test_objects_versions_allocations_and_history_survive_restart(start_server, connect, how):
    fresh_server = start_server(*SMALL_RANGES)
    api = connect(fresh_server)
    fixed = created(api, SERVICES, service("fixed", type="NodePort", ports=[{"port": 80, "nodePort": 30100}]))
    randoms = [created(api, SERVICES, service(f"random-{i}", type="NodePort")) for i in range(4)]
    plain = [created(api, SERVICES, service(f"plain-{i}", labels={"tier": "web"})) for i in range(4)]
    deploy = created(api, DEPLOYMENTS, deployment("web"))
    created(api, PODS, pod("solo"))
    mark = api.get(SERVICES).json()["metadata"]["resourceVersion"]
    # History after the mark: a change, a selector transition, a delete.
    relabeled = api.request("PATCH", SERVICES + "/plain-0", {"metadata": {"labels": {"tier": "db"}}},
                            content_type="application/merge-patch+json").json()
    touched = api.request("PATCH", SERVICES + "/plain-1", {"metadata": {"annotations": {"a": "b"}}},
                          content_type="application/merge-patch+json").json()
    deleted = api.request("DELETE", SERVICES + "/plain-2").json()
    # The revision before the snapshot: a controller's write racing the snapshot is newer than it.
    last_rev = int(api.get(SERVICES).json()["metadata"]["resourceVersion"])
    before = {path: api.get(path).json() for path in (
        *(f"{SERVICES}/{s['metadata']['name']}" for s in [fixed, *randoms, *plain] if s is not plain[2]),
        f"{DEPLOYMENTS}/web", f"{PODS}/solo")}
    api.close()

    restart(fresh_server, how)

    for path, old in before.items():
        now = api.get(path)
        assert now.status == 200, (path, now.body[:300])
        uid, rv = identity(now.json())
        assert uid == old["metadata"]["uid"], path
        # Services are written by no one else; a workload may have been touched by a controller since.
        assert rv == old["metadata"]["resourceVersion"] or (path.startswith((PODS, DEPLOYMENTS))
                                                             and int(rv) > last_rev), path
    assert api.get(SERVICES + "/plain-2").status == 404
    assert int(api.get(SERVICES).json()["metadata"]["resourceVersion"]) >= last_rev
    assert identity(api.get(f"{DEPLOYMENTS}/web").json())[0] == deploy["metadata"]["uid"]

    again = api.post(SERVICES, service("fixed-again", type="NodePort", ports=[{"port": 80, "nodePort": 30100}]))
    assert again.status == 422
    assert ("spec.ports[0].nodePort: Invalid value: 30100: provided port is already allocated"
            in again.json()["message"])
    taken = node_ports(randoms[0])[0]
    reuse = api.post(SERVICES, service("random-again", type="NodePort", ports=[{"port": 80, "nodePort": taken}]))
    assert reuse.status == 422 and "provided port is already allocated" in reuse.json()["message"]

    old_ips = {s["spec"]["clusterIP"] for s in [fixed, *randoms, *plain]} - {plain[2]["spec"]["clusterIP"]}
    old_ports = {p for s in [fixed, *randoms] for p in node_ports(s)}
    new = [created(api, SERVICES, service(f"after-{i}", type="NodePort")) for i in range(8)]
    new_ips = [s["spec"]["clusterIP"] for s in new]
    new_ports = [p for s in new for p in node_ports(s)]
    assert len(set(new_ips)) == len(new_ips) and not set(new_ips) & old_ips
    assert len(set(new_ports)) == len(new_ports) and not set(new_ports) & old_ports

    events = watch_events(api, f"resourceVersion={mark}")
    assert events[:3] == [("MODIFIED", "plain-0", relabeled["metadata"]["resourceVersion"]),
                          ("MODIFIED", "plain-1", touched["metadata"]["resourceVersion"]),
                          ("DELETED", "plain-2", deleted["metadata"]["resourceVersion"])]
    selected = watch_events(api, f"resourceVersion={mark}&labelSelector=tier%3Dweb")
    assert [e[:2] for e in selected[:3]] == [("DELETED", "plain-0"), ("MODIFIED", "plain-1"),
                                             ("DELETED", "plain-2")]


def test_acknowledged_writes_survive_kill9_under_concurrent_load(start_server, connect):
    """32 clients write; the server is killed mid-way; every write answered 2xx is there afterwards."""
    fresh_server = start_server()
    clients, total_ops = 32, 500
    counter = itertools.count()
    lock = threading.Lock()
    acked: dict[str, tuple[str, str] | None] = {}  # name -> (uid, rv) of the last acknowledged write; None: deleted
    uncertain: set[str] = set()  # a write in flight when the server died: either outcome is allowed
    killed = threading.Event()
    acknowledged = itertools.count(1)
    acked_count = 0

    def worker(index: int) -> None:
        api = Api(fresh_server, timeout=5)
        names = [f"load-{index}-{j}" for j in range(3)]
        try:
            for step in itertools.count():
                if next(counter) >= total_ops or killed.is_set():
                    return
                name = names[step % 3]
                phase = (step // 3) % 3
                try:
                    if phase == 0:
                        reply = api.post(SERVICES, service(name, labels={"step": str(step)}))
                    elif phase == 1:
                        reply = api.request("PATCH", f"{SERVICES}/{name}", {"metadata": {"labels": {"step": str(step)}}},
                                            content_type="application/merge-patch+json")
                    else:
                        reply = api.request("DELETE", f"{SERVICES}/{name}")
                except OSError:
                    with lock:
                        uncertain.add(name)
                    return
                if reply.status >= 300:
                    with lock:
                        uncertain.add(name)  # a 5xx from a dying server, or a 409 after an earlier unknown
                    return
                nonlocal acked_count
                with lock:
                    acked[name] = None if phase == 2 else identity(reply.json())
                    acked_count = next(acknowledged)
        finally:
            api.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    probe = connect(fresh_server)
    deadline = time.monotonic() + 10
    while acked_count < total_ops // 2 and time.monotonic() < deadline:  # let some load through, then pull the plug
        time.sleep(0.005)
    fresh_server.kill9()
    killed.set()
    for t in threads:
        t.join(10)
    assert total_ops // 2 <= acked_count < total_ops, "the kill did not land mid-way"
    fresh_server.start(port=0)
    for name, expected in acked.items():
        if name in uncertain:
            continue
        reply = probe.get(f"{SERVICES}/{name}")
        if expected is None:
            assert reply.status == 404, name
        else:
            assert reply.status == 200, name
            assert identity(reply.json()) == expected, name
