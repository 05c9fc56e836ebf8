"""Endpoints, EndpointSlice and LoadBalancer controllers against a real API server.

The controllers run in-process over the REST client, unless the server process already runs
them (its control plane registers them): two sets would race, so the probe below decides once
per module. There is no kubelet: the test creates pods already bound to a node and plays the
kubelet's part through the pods/status subresource (`simulated_*` helpers): pod IP, Ready
condition, and finishing a graceful delete.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from collections.abc import Awaitable

import pytest
from control_plane_helpers import server_in_temp_dir, until

from pocketkube.api import errors
from pocketkube.api.resources import BY_PLURAL
from pocketkube.api.timestamps import now_rfc3339
from pocketkube.client.events import EventRecorder
from pocketkube.client.informer import Informer
from pocketkube.client.rest import Client
from pocketkube.controllers.base import SharedInformers
from pocketkube.controllers.endpoints import EndpointsController
from pocketkube.controllers.endpointslice import EndpointSliceController
from pocketkube.controllers.endpointslice_plan import TRIGGER_TIME_ANNOTATION
from pocketkube.controllers.loadbalancer import CONDITION_TYPE, LoadBalancerController
from pocketkube.testing.procs import ServerProcess

PODS = BY_PLURAL[("", "pods")]
NODES = BY_PLURAL[("", "nodes")]
SERVICES = BY_PLURAL[("", "services")]
ENDPOINTS = BY_PLURAL[("", "endpoints")]
SLICES = BY_PLURAL[("discovery.k8s.io", "endpointslices")]
EVENTS = BY_PLURAL[("", "events")]
NAMESPACES = BY_PLURAL[("", "namespaces")]
NODE_NAMES = ("ep-node-1", "ep-node-2")
LB_POOL = "127.201.0.0/29"  # hands out .2 to .6: five IPs
_ns_counter = itertools.count(1)
_ip_counter = itertools.count(1)


class Controllers:
    def __init__(self, client: Client, pool: str = LB_POOL) -> None:
        self.client = client
        self.informers = SharedInformers(client)
        self.recorders = [EventRecorder(client, c) for c in ("endpointslice-controller", "endpoint-controller",
                                                               "service-lb-controller")]
        self.controllers = [EndpointSliceController(client, self.informers, self.recorders[0]),
                            EndpointsController(client, self.informers, self.recorders[1]),
                            LoadBalancerController(client, self.informers, self.recorders[2], pool=pool)]
        self.tasks: list[asyncio.Task] = []

    async def start(self) -> None:
        self.informers.start()
        self.tasks = [asyncio.get_running_loop().create_task(c.run()) for c in self.controllers]
        await self.informers.wait_synced(10)

    async def stop(self) -> None:
        await asyncio.gather(*(c.stop() for c in self.controllers))
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.informers.stop()
        await asyncio.gather(*(r.stop() for r in self.recorders))


@pytest.fixture(scope="module")
def server():
    """This module's API server, with a five-address LoadBalancer pool for its control plane."""
    yield from server_in_temp_dir("pk-ep-", ["--load-balancer-pool", LB_POOL])


_server_runs_them: dict[int, bool] = {}


async def server_runs_controllers(client: Client, server: ServerProcess) -> bool:
    """Whether the server process's own control plane makes EndpointSlices (probed once)."""
    if server.port not in _server_runs_them:
        await client.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ep-probe"}})
        await client.create(SERVICES, service("ep-probe", "probe", selector={"app": "nobody"}))
        try:
            await until(lambda: slices_of(client, "ep-probe", "probe"), "a slice made by the server", timeout=1.5)
            _server_runs_them[server.port] = True
        except AssertionError:
            _server_runs_them[server.port] = False
    return _server_runs_them[server.port]


@pytest.fixture
async def client(server):
    c = Client(server.url, server.token(), str(server.ca_file))
    for i, name in enumerate(NODE_NAMES):
        labels = {"kubernetes.io/hostname": name, **({"topology.kubernetes.io/zone": "zone-a"} if i == 0 else {})}
        try:
            await c.create(NODES, {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels}})
        except errors.AlreadyExists:
            pass
    yield c
    await c.close()


@pytest.fixture
async def controllers(client, server):
    if await server_runs_controllers(client, server):
        yield None
        return
    cs = Controllers(client)
    await cs.start()
    yield cs
    await cs.stop()


@pytest.fixture
async def ns(client) -> str:
    name = f"ep-test-{next(_ns_counter)}"
    await client.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    return name


# ---- the simulated kubelet and object builders ----

def service(ns: str, name: str = "web", selector: dict | None = None, ports: list | None = None, **spec) -> dict:
    spec = {"selector": {"app": name} if selector is None else selector,
            "ports": ports or [{"port": 80, "targetPort": 8080}], **spec}
    if spec["selector"] is False:
        del spec["selector"]
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns, "labels": {"team": "a"}},
            "spec": spec}


async def simulated_pod(client: Client, ns: str, name: str, labels: dict, *, ready: bool = True,
                        node: str = NODE_NAMES[0], ports: list | None = None) -> dict:
    """A pod bound to `node` that its (simulated) kubelet reports running with an IP."""
    pod = await client.create(PODS, {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "nginx", "ports": ports or []}]}})
    n = next(_ip_counter)
    ip = f"127.245.{n // 250}.{n % 250 + 1}"
    return await simulated_status(client, pod, ip=ip, ready=ready)


async def simulated_status(client: Client, pod: dict, *, ip: str | None = None, ready: bool) -> dict:
    ip = ip or pod["status"]["podIP"]
    ts = now_rfc3339()
    return await client.update_status(PODS, {**pod, "status": {
        "phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}], "hostIP": "127.0.1.1",
        "conditions": [{"type": "Ready", "status": "True" if ready else "False", "lastTransitionTime": ts}]}})


async def simulated_set_ready(client: Client, ns: str, name: str, ready: bool) -> dict:
    return await simulated_status(client, await client.get(PODS, ns, name), ready=ready)


async def slices_of(client: Client, ns: str, svc: str = "web") -> list[dict]:
    items, _ = await client.list(SLICES, ns, label_selector=f"kubernetes.io/service-name={svc}")
    return items


async def endpoints_of(client: Client, ns: str, svc: str = "web") -> dict | None:
    try:
        return await client.get(ENDPOINTS, ns, svc)
    except errors.NotFound:
        return None


def conditions_by_pod(slices: list[dict]) -> dict[str, dict]:
    return {e["targetRef"]["name"]: e["conditions"] for s in slices for e in s.get("endpoints") or []}


# ---- tests ----

async def test_three_ready_pods_then_not_ready_then_terminating(client, controllers, ns):
    svc = await client.create(SERVICES, service(ns))
    pods = [await simulated_pod(client, ns, f"web-{i}", {"app": "web"}, node=NODE_NAMES[i % 2]) for i in range(3)]
    ips = sorted(p["status"]["podIP"] for p in pods)

    async def three_ready():
        slices = await slices_of(client, ns)
        eps = [e for s in slices for e in s.get("endpoints") or []]
        return slices if len(eps) == 3 and all(e["conditions"]["ready"] for e in eps) else None
    (slice_,) = await until(three_ready, "a slice with 3 ready endpoints")
    m = slice_["metadata"]
    assert re.fullmatch(r"web-[bcdfghjklmnpqrstvwxz2456789]{5}", m["name"])
    assert m["labels"] == {"team": "a", "kubernetes.io/service-name": "web",
                           "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"}
    assert m["ownerReferences"] == [{"apiVersion": "v1", "kind": "Service", "name": "web",
                                     "uid": svc["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z", m["annotations"][TRIGGER_TIME_ANNOTATION])
    assert slice_["addressType"] == "IPv4"
    assert slice_["ports"] == [{"name": "", "port": 8080, "protocol": "TCP"}]
    by_pod = {e["targetRef"]["name"]: e for e in slice_["endpoints"]}
    assert by_pod["web-0"]["nodeName"] == NODE_NAMES[0] and by_pod["web-0"]["zone"] == "zone-a"
    assert by_pod["web-1"]["nodeName"] == NODE_NAMES[1] and "zone" not in by_pod["web-1"]
    assert by_pod["web-2"]["targetRef"] == {"kind": "Pod", "namespace": ns, "name": "web-2",
                                            "uid": pods[2]["metadata"]["uid"]}

    async def ready_endpoints():
        ep = await endpoints_of(client, ns)
        return ep if ep and [a["ip"] for s in ep.get("subsets") or [] for a in s.get("addresses") or []] == ips else None
    ep = await until(ready_endpoints, "Endpoints with 3 addresses")
    assert ep["subsets"][0]["ports"] == [{"port": 8080, "protocol": "TCP"}]
    assert ep["metadata"]["labels"] == {"team": "a"}
    assert {a["nodeName"] for a in ep["subsets"][0]["addresses"]} == set(NODE_NAMES)

    # Not ready: ready=false serving=false in the slice; notReadyAddresses in Endpoints.
    await simulated_set_ready(client, ns, "web-0", False)

    async def web0_not_ready():
        return conditions_by_pod(await slices_of(client, ns)).get("web-0") == {
            "ready": False, "serving": False, "terminating": False}
    await until(web0_not_ready, "web-0 not ready in the slice")

    async def web0_not_ready_address():
        ep = await endpoints_of(client, ns)
        return [a["targetRef"]["name"] for s in ep.get("subsets") or [] for a in s.get("notReadyAddresses") or []] \
            == ["web-0"]
    await until(web0_not_ready_address, "web-0 under notReadyAddresses")

    # Terminating (graceful delete, the kubelet has not finished it): kept in the slice, dropped from Endpoints.
    await client.delete(PODS, ns, "web-1")

    async def web1_terminating():
        return conditions_by_pod(await slices_of(client, ns)).get("web-1") == {
            "ready": False, "serving": True, "terminating": True}
    await until(web1_terminating, "web-1 terminating in the slice")

    async def web1_gone_from_endpoints():
        ep = await endpoints_of(client, ns)
        names = [a["targetRef"]["name"] for s in ep.get("subsets") or []
                 for k in ("addresses", "notReadyAddresses") for a in s.get(k) or []]
        return sorted(names) == ["web-0", "web-2"]
    await until(web1_gone_from_endpoints, "web-1 removed from Endpoints")
    await client.delete(PODS, ns, "web-1", grace_period=0)
    await until(lambda: _lacks(slices_of(client, ns), "web-1"), "web-1 gone from the slice")


async def _lacks(slices: Awaitable[list[dict]], pod: str) -> bool:
    return pod not in conditions_by_pod(await slices)


async def test_slice_is_written_within_milliseconds_of_a_pod_status_change(client, controllers, ns):
    await client.create(SERVICES, service(ns))
    pod = await simulated_pod(client, ns, "fast", {"app": "web"}, ready=False)
    await until(lambda: _has(slices_of(client, ns), "fast"), "the pod in a slice")
    watcher = Informer(client, SLICES, ns)
    became_ready = asyncio.Event()
    watcher.add_handlers(on_update=lambda old, new: conditions_by_pod([new]).get("fast", {}).get("ready")
                         and became_ready.set())
    task = asyncio.get_running_loop().create_task(watcher.run())
    await watcher.synced.wait()
    delays = []
    for ready in (True, False, True):
        became_ready.clear()
        start = time.monotonic()
        pod = await simulated_status(client, pod, ready=ready)
        if ready:
            await asyncio.wait_for(became_ready.wait(), 2)
            delays.append(time.monotonic() - start)
        else:
            await until(lambda: _not_ready(slices_of(client, ns), "fast"), "not ready")
    task.cancel()
    print(f"pod Ready → EndpointSlice seen by a watcher: {[round(d * 1000, 1) for d in delays]} ms")
    assert max(delays) < 0.5  # typically a few ms; generous for loaded CI machines


async def _has(slices: Awaitable[list[dict]], pod: str) -> bool:
    return pod in conditions_by_pod(await slices)


async def _not_ready(slices: Awaitable[list[dict]], pod: str) -> bool:
    return conditions_by_pod(await slices).get(pod, {}).get("ready") is False


async def test_publish_not_ready_addresses(client, controllers, ns):
    await client.create(SERVICES, service(ns, publishNotReadyAddresses=True))
    await simulated_pod(client, ns, "never-ready", {"app": "web"}, ready=False)

    async def published():
        ep = await endpoints_of(client, ns)
        slices = await slices_of(client, ns)
        return (ep and [a["targetRef"]["name"] for s in ep.get("subsets") or [] for a in s.get("addresses") or []]
                == ["never-ready"]
                and conditions_by_pod(slices).get("never-ready") == {"ready": True, "serving": False,
                                                                     "terminating": False})
    await until(published, "the unready pod published as ready")
    await client.delete(PODS, ns, "never-ready")  # terminating, still published

    async def still_published():
        ep = await endpoints_of(client, ns)
        cond = conditions_by_pod(await slices_of(client, ns)).get("never-ready")
        return cond == {"ready": True, "serving": False, "terminating": True} and ep.get("subsets")
    await until(still_published, "the terminating pod still published")


async def test_named_target_port_multiport_two_slices(client, controllers, ns):
    await client.create(SERVICES, service(ns, ports=[
        {"name": "http", "port": 80, "targetPort": "example-name"}]))
    await simulated_pod(client, ns, "a", {"app": "web"}, ports=[{"name": "example-name", "containerPort": 3000}])
    await simulated_pod(client, ns, "b", {"app": "web"}, ports=[{"name": "example-name", "containerPort": 3001}])

    async def two_slices():
        slices = await slices_of(client, ns)
        got = sorted((s["ports"][0]["port"], [e["targetRef"]["name"] for e in s["endpoints"]])
                     for s in slices if s.get("ports"))
        return got if got == [(3000, ["a"]), (3001, ["b"])] and len(slices) == 2 else None
    await until(two_slices, "2 slices for 2 resolved ports")

    async def two_subsets():
        ep = await endpoints_of(client, ns)
        return sorted((s["ports"][0]["port"], s["ports"][0]["name"]) for s in ep.get("subsets") or []) == [
            (3000, "http"), (3001, "http")]
    await until(two_subsets, "Endpoints subsets per resolved port")


async def test_selector_matching_nothing_then_service_deleted(client, controllers, ns):
    await client.create(SERVICES, service(ns, selector={"app": "nobody"}))

    async def placeholder_and_empty_endpoints():
        slices = await slices_of(client, ns)
        ep = await endpoints_of(client, ns)
        return (len(slices) == 1 and slices[0]["endpoints"] in (None, []) and slices[0]["ports"] in (None, [])
                and ep is not None and not ep.get("subsets"))
    await until(placeholder_and_empty_endpoints, "placeholder slice and empty Endpoints")
    await client.delete(SERVICES, ns, "web")

    async def all_gone():
        return not await slices_of(client, ns) and await endpoints_of(client, ns) is None
    await until(all_gone, "slices and Endpoints deleted with the service")


async def test_service_without_selector_gets_nothing_and_hand_made_objects_stay(client, controllers, ns):
    await client.create(SERVICES, service(ns, name="manual", selector=False))
    await simulated_pod(client, ns, "p", {"app": "manual"})
    hand_ep = await client.create(ENDPOINTS, {"apiVersion": "v1", "kind": "Endpoints",
                                              "metadata": {"name": "manual", "namespace": ns},
                                              "subsets": [{"addresses": [{"ip": "10.9.9.9"}], "ports": [{"port": 9}]}]})
    hand_slice = await client.create(SLICES, {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "manual-1", "namespace": ns, "labels": {"kubernetes.io/service-name": "manual"}},
        "addressType": "IPv4", "endpoints": [{"addresses": ["10.9.9.9"]}], "ports": [{"port": 9}]})
    # A selector service created afterwards is synced after the first: once it has its
    # objects, the controllers have already passed over "manual".
    await client.create(SERVICES, service(ns, name="later"))
    await until(lambda: _endpoints_exist(client, ns, "later"), "objects of a later service")
    assert [s["metadata"]["name"] for s in await slices_of(client, ns, "manual")] == ["manual-1"]
    assert (await slices_of(client, ns, "manual"))[0]["metadata"]["resourceVersion"] == \
        hand_slice["metadata"]["resourceVersion"]
    assert (await endpoints_of(client, ns, "manual"))["metadata"]["resourceVersion"] == \
        hand_ep["metadata"]["resourceVersion"]


async def _endpoints_exist(client: Client, ns: str, name: str) -> bool:
    return bool(await slices_of(client, ns, name)) and await endpoints_of(client, ns, name) is not None


async def test_more_than_100_pods_give_two_slices(client, controllers, ns):
    await client.create(SERVICES, service(ns))
    await asyncio.gather(*(simulated_pod(client, ns, f"p{i:03d}", {"app": "web"}) for i in range(105)))

    async def two_slices():
        slices = await slices_of(client, ns)
        sizes = [len(s.get("endpoints") or []) for s in slices]
        return sizes if len(sizes) == 2 and sum(sizes) == 105 and max(sizes) <= 100 else None
    # How the 105 split depends on how the pods arrived (slices are filled, never rebalanced).
    await until(two_slices, "two slices holding 105 endpoints")

    async def endpoints_complete():
        ep = await endpoints_of(client, ns)
        return sum(len(s.get("addresses") or []) for s in ep.get("subsets") or []) == 105
    await until(endpoints_complete, "105 addresses in Endpoints")


async def _lb_ip(client: Client, ns: str, name: str) -> str | None:
    svc = await client.get(SERVICES, ns, name)
    ingress = (svc.get("status") or {}).get("loadBalancer", {}).get("ingress") or []
    return ingress[0]["ip"] if ingress else None


async def test_load_balancer_ip_assigned_released_and_pool_full(client, controllers, ns):
    await client.create(SERVICES, service(ns, name="lb1", type="LoadBalancer"))
    ip1 = await until(lambda: _lb_ip(client, ns, "lb1"), "an ingress IP")
    assert ip1 == "127.201.0.2"
    svc = await client.get(SERVICES, ns, "lb1")
    assert svc["status"]["loadBalancer"]["ingress"] == [{"ip": ip1, "ipMode": "VIP"}]
    assert [(c["type"], c["status"]) for c in svc["status"]["conditions"]] == [(CONDITION_TYPE, "True")]
    await client.create(SERVICES, service(ns, name="other-class", type="LoadBalancer",
                                                  loadBalancerClass="example.com/lb"))
    for i in range(2, 6):
        await client.create(SERVICES, service(ns, name=f"lb{i}", type="LoadBalancer"))
    ips = [await until(lambda i=i: _lb_ip(client, ns, f"lb{i}"), f"IP of lb{i}") for i in range(2, 6)]
    assert sorted({ip1, *ips}) == [f"127.201.0.{n}" for n in range(2, 7)]

    # The pool is full: an Event and a condition, not a silent <pending>.
    await client.create(SERVICES, service(ns, name="lb6", type="LoadBalancer"))

    async def failed_condition():
        s = await client.get(SERVICES, ns, "lb6")
        return [c for c in (s.get("status") or {}).get("conditions") or []
                if c["type"] == CONDITION_TYPE and c["status"] == "False"]
    (cond,) = await until(failed_condition, "an AllocationFailed condition")
    assert cond["reason"] == "AllocationFailed" and cond["message"] == f"no available IPs in pool {LB_POOL}"

    async def warning_event():
        events, _ = await client.list(EVENTS, ns)
        return [e for e in events if e["reason"] == "AllocationFailed" and e["involvedObject"]["name"] == "lb6"]
    (event,) = await until(warning_event, "an AllocationFailed event")
    assert event["type"] == "Warning" and event["message"] == f"no available IPs in pool {LB_POOL}"
    assert event["source"]["component"] == "service-lb-controller"

    # Type change releases the IP; the waiting service gets it at once.
    await client.patch(SERVICES, ns, "lb1", {"spec": {"type": "ClusterIP"}})
    assert await until(lambda: _lb_ip(client, ns, "lb6"), "lb6 gets the released IP") == ip1
    assert (await client.get(SERVICES, ns, "lb1"))["status"].get("loadBalancer") in ({}, None)
    assert not (await client.get(SERVICES, ns, "other-class"))["status"].get("loadBalancer", {}).get("ingress")

    # Deletion releases too, and spec.loadBalancerIP is honoured when free.
    await client.delete(SERVICES, ns, "lb2")
    await client.create(SERVICES, service(ns, name="wants", type="LoadBalancer", loadBalancerIP=ips[0]))
    assert await until(lambda: _lb_ip(client, ns, "wants"), "the requested IP") == ips[0]
    for name in ("lb3", "lb4", "lb5", "lb6", "wants"):  # give the pool back to the next test
        await client.delete(SERVICES, ns, name)


async def test_load_balancer_allocations_survive_a_controller_restart(client, server, ns):
    """A restarted controller re-owns the IPs in the services' status before allocating."""
    in_server = await server_runs_controllers(client, server)
    first = None if in_server else Controllers(client)
    if first is not None:
        await first.start()
    await client.create(SERVICES, service(ns, name="keep", type="LoadBalancer"))
    ip = await until(lambda: _lb_ip(client, ns, "keep"), "an IP")
    if first is not None:
        await first.stop()
        second = Controllers(client)
        await second.start()
    else:
        server.kill9()
        server.start()
        await client.close()
        client = Client(server.url, server.token(), str(server.ca_file))  # the old connections are dead
    try:
        await client.create(SERVICES, service(ns, name="new", type="LoadBalancer"))
        new_ip = await until(lambda: _lb_ip(client, ns, "new"), "an IP for the new service")
        assert new_ip != ip and await _lb_ip(client, ns, "keep") == ip
    finally:
        if first is not None:
            await second.stop()
        else:
            await client.close()


async def test_kubectl_shows_endpoints_slices_and_describe(client, controllers, ns, kubectl):
    await client.create(SERVICES, service(ns))
    await client.create(SERVICES, service(ns, name="empty", selector={"app": "nobody"}))
    pods = [await simulated_pod(client, ns, f"web-{i}", {"app": "web"}) for i in range(4)]
    ips = [p["status"]["podIP"] for p in pods]

    async def settled():
        ep = await endpoints_of(client, ns)
        empty = await endpoints_of(client, ns, "empty")
        return (ep and sum(len(s.get("addresses") or []) for s in ep.get("subsets") or []) == 4
                and empty is not None and await slices_of(client, ns, "empty"))
    await until(settled, "Endpoints of both services")
    out = await asyncio.to_thread(kubectl.ok, "get", "endpoints", "-n", ns)
    lines = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert out.splitlines()[0].split() == ["NAME", "ENDPOINTS", "AGE"]
    assert "<none>" in lines["empty"]
    shown = sorted(ips)[:3]  # Endpoints addresses are sorted by IP string
    assert lines["web"].split()[1] == ",".join(f"{ip}:8080" for ip in shown) and "+ 1 more..." in lines["web"]

    out = await asyncio.to_thread(kubectl.ok, "get", "endpointslices", "-n", ns)
    assert out.splitlines()[0].split() == ["NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"]
    rows = [line.split() for line in out.splitlines()[1:]]
    web = next(r for r in rows if r[0].startswith("web-"))
    empty = next(r for r in rows if r[0].startswith("empty-"))
    assert web[1:3] == ["IPv4", "8080"] and "+" in web and "more..." in web
    assert empty[1:4] == ["IPv4", "<unset>", "<unset>"]

    out = await asyncio.to_thread(kubectl.ok, "describe", "service", "web", "-n", ns)
    value = next(line for line in out.splitlines() if line.startswith("Endpoints:")).split(None, 1)[1]
    listed, more = value.split(" + ")
    assert more == "1 more..." and set(listed.split(",")) < {f"{ip}:8080" for ip in ips}
    out = await asyncio.to_thread(kubectl.ok, "describe", "service", "empty", "-n", ns)
    assert re.search(r"^Endpoints:\s*$", out, re.MULTILINE)  # slices without ready endpoints: an empty value
