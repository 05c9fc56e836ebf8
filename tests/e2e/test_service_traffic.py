"""Services that carry traffic (issue 4), end to end with the real kubectl, on both data planes.

One `pocketkube up` per data plane, each on address ranges of its own. The backends are real
processes: nginx for the seed, and elsewhere a small Python server (svc_helpers.WHOAMI) whose
answer names the pod, so a test can see which endpoint a connection reached.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
from svc_helpers import (
    Convergence,
    LoadLoop,
    as_input,
    chi_square_uniform,
    connect_outcome,
    convergence,
    deployment,
    get_json,
    hits,
    http_get,
    live_pods,
    model_converged,
    nginx_welcome,
    pod,
    service,
    try_who,
    udp_ask,
    udp_outcome,
    wait_for,
    wait_ready,
    who,
    who_sees,
    whoami_container,
)

from pocketkube.proxy.select import nftables_usable
from pocketkube.testing.procs import (
    Kubectl,
    kubectl_binaries,
    running_cluster,
)
from pocketkube.testing.requires import KUBECTL, NFT, NGINX, have_nginx, require, requires

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"

pytestmark = [requires(have_nginx(), NGINX), requires(bool(kubectl_binaries()), KUBECTL), pytest.mark.slow, pytest.mark.timeout(300)]

# Address ranges per data plane, apart from each other and from every other cluster the tests
# and benches start (several sessions run them side by side on one host).
PLANES = {
    "nftables": {"node_ip_base": "127.0.20.0", "pod_cidr_base": "127.230.0.0/16",
                 "service_cidr": "127.110.0.0/16", "lb_pool": "127.210.0.0/24"},
    "userspace": {"node_ip_base": "127.0.21.0", "pod_cidr_base": "127.231.0.0/16",
                  "service_cidr": "127.111.0.0/16", "lb_pool": "127.211.0.0/24"},
}
NODES = 3
WHOAMI_PORT = 8080
CLIENT_IP = "127.0.0.77"  # a client address of our own: every 127/8 address is local


@pytest.fixture(scope="module", params=sorted(PLANES))
def cluster(request):
    plane = request.param
    if plane == "nftables":
        require(nftables_usable(), NFT)
    with running_cluster(f"pk-svc-{plane}-", nodes=NODES, extra_args=["--dataplane", plane],
                         **PLANES[plane]) as c:
        c.plane = plane
        yield c


@pytest.fixture(scope="module")
def k(cluster):
    binaries = kubectl_binaries()
    kc = Kubectl(binaries.get("kubectl-1.32") or next(iter(binaries.values())), cluster.kubeconfig, cwd=ROOT)
    yield kc
    kc.close()


def node_ips(cluster) -> list[str]:
    return [cluster.node_ip(i) for i in range(1, NODES + 1)]


def create(k, *objects: dict) -> str:
    return k.ok("create", "-f", "-", input=as_input(*objects))


def delete(k, *names: str) -> None:
    """Delete and wait until gone (pods' processes included)."""
    k.run("delete", *names, "--ignore-not-found", "--wait=true", timeout=60)


def svc_json(k, name: str) -> dict:
    return get_json(k, "svc", name)


def node_port(k, name: str, index: int = 0) -> int:
    return svc_json(k, name)["spec"]["ports"][index]["nodePort"]


def cluster_ip(k, name: str) -> str:
    return svc_json(k, name)["spec"]["clusterIP"]


def svc_row(k, name: str) -> list[str]:
    return k.ok("get", "svc", name, "--no-headers").split()


def answers_from_all(frontends: list[tuple[str, int]], expected: set[str], tries: int = 60) -> bool:
    """Every frontend answers, and together they reach every pod of `expected` (a warm-up)."""
    seen = set()
    for i in range(tries):
        host, port = frontends[i % len(frontends)]
        seen.add(try_who(host, port))
        if seen == expected:
            return True
    return False


@pytest.fixture(scope="module")
def whoami(k, cluster):
    """Three self-naming pods, one per node; name -> node."""
    create(k, deployment("whoami", 3, whoami_container({"http": WHOAMI_PORT}, probe_port="http")))
    try:
        pods = wait_ready(k, "app=whoami", 3)
        placed = {p["metadata"]["name"]: p["spec"]["nodeName"] for p in pods}
        yield placed
    finally:
        delete(k, "deployment/whoami")


# ---- 1. the seed, literally ----

def test_seed_end_to_end(k, cluster):
    try:
        k.ok("create", "-f", str(EXAMPLES / "deployment-definition.yaml"))
        assert k.ok("create", "-f", str(EXAMPLES / "service-definition.yaml")) == "service/myapp-service created\n"
        pods = wait_ready(k, "app=myapp,type=front-end", 3)
        assert len({p["spec"]["nodeName"] for p in pods}) == 3, "3 replicas should land on 3 different nodes"
        row = next(r.split() for r in k.ok("get", "services").splitlines() if r.startswith("myapp-service "))
        assert row[1] == "NodePort" and row[4] == "80:30008/TCP", row
        for ip in node_ips(cluster):
            # nginx has no readiness probe: Ready as soon as it starts, maybe before it listens
            body = wait_for(lambda ip=ip: nginx_welcome(ip, 30008), timeout=5, what=f"nginx via {ip}:30008")
            assert "<title>Welcome to nginx!</title>" in body
        assert "Welcome to nginx!" in http_get(cluster_ip(k, "myapp-service"), 80)
    finally:
        delete(k, "service/myapp-service", "deployment/myapp-deployment")



# ---- 2. random load balancing ----

def test_new_connections_spread_at_random(k, cluster, whoami):
    create(k, service("spread", {"app": "whoami"}, [{"port": 80, "targetPort": "http"}], "NodePort"))
    try:
        np = node_port(k, "spread")
        frontends = [(ip, np) for ip in node_ips(cluster)]
        assert wait_for(lambda: answers_from_all(frontends, set(whoami)), what="all pods answer")
        # A test at 1% fails one run in a hundred by chance alone: a sample that rejects gets a
        # second, independent one, and only two rejections in a row fail (1 in 10,000 by chance;
        # a real bias keeps rejecting).
        samples = []
        for _attempt in range(2):
            counts: Counter = Counter()
            for i in range(300):
                counts[who(*frontends[i % 3])] += 1
            stat, p = chi_square_uniform([counts[name] for name in whoami])
            print(f"\n[{cluster.plane}] 300 connections: {dict(counts)} chi2={stat:.2f} p={p:.3f}")
            assert set(counts) == set(whoami)
            samples.append(f"{dict(counts)} (chi2={stat:.2f}, p={p:.4f})")
            if p > 0.01:
                break
        else:
            raise AssertionError(f"not uniform at 1% in two samples in a row: {samples}")
    finally:
        delete(k, "service/spread")


# ---- 3. pods come and go under constant load ----

def test_traffic_follows_pods_under_load(k, cluster):
    """Scale 3 → 6 → 1 and a rolling update under a loop of new connections through the NodePort on
    every node: new pods get traffic, removed ones stop getting it, and once the EndpointSlice has
    converged (plus PROGRAMMING_GRACE for the proxies) no request reaches a removed pod and at most
    a rare isolated request fails."""
    create(k, deployment("load", 3, whoami_container({"http": WHOAMI_PORT}, probe_port="http")),
           service("load", {"app": "load"}, [{"port": 80, "targetPort": "http"}], "NodePort"))
    loop = None
    try:
        wait_ready(k, "app=load", 3)
        np = node_port(k, "load")
        frontends = [(ip, np) for ip in node_ips(cluster)]
        names = {p["metadata"]["name"] for p in live_pods(k, "app=load")}
        assert wait_for(lambda: answers_from_all(frontends, names), what="all pods answer")
        loop = LoadLoop(frontends).start()
        report = []
        for label, command, replicas in (
                ("scale 3→6", ("scale", "deployment/load", "--replicas=6"), 6),
                ("scale 6→1", ("scale", "deployment/load", "--replicas=1"), 1),
                ("rolling update", ("set", "env", "deployment/load", "VERSION=2"), 1)):
            t0 = time.monotonic()
            k.ok(*command)
            model_at, final = wait_for(lambda n=replicas: model_converged(k, "load", "app=load", n),
                                       timeout=40, interval=0.05, what=f"EndpointSlice after {label}")
            conv = wait_for(lambda t0=t0, final=final, at=model_at: _settled(loop, t0, final, at), timeout=30,
                            interval=0.2, what=f"traffic to converge after {label}")
            report.append((label, conv))
            wait_ready(k, "app=load", replicas, timeout=40)  # terminating pods gone before the next step
        print(f"\n[{cluster.plane}] convergence after a change (traffic: answering pods == Ready pods; "
              f"model: EndpointSlice == Ready pods):")
        for label, conv in report:
            print(f"  {label:15} traffic {conv.seconds:5.2f} s, model {conv.model_seconds:5.2f} s; "
                  f"failed during transition {conv.failed_in_transition} (over {conv.failing_seconds:.3f} s); after: {conv.requests_after_model} "
                  f"requests, {conv.failed_after_model} failed, {conv.strays_after_model} to removed pods")
        for label, conv in report:
            # No request may reach a removed pod once the model converged. A failed request there
            # is allowed only as a rare isolated event (≤ 1 in 2,000): sequential new connections
            # through a DNAT address reuse source ports whose post-DNAT tuple may still be in the
            # pod's TIME_WAIT (the effect issue 9's churn bench describes), which a data plane
            # lagging behind the model would exceed by far (1 in 3 requests on the lagging node).
            assert conv.strays_after_model == 0, (label, conv)
            assert conv.failed_after_model <= conv.requests_after_model // 2000, (label, conv)
            assert conv.seconds < 15, f"{label}: convergence took {conv.seconds:.1f} s"
    finally:
        if loop is not None:
            loop.stop()
        delete(k, "service/load", "deployment/load")


PROGRAMMING_GRACE = 0.5  # seconds from an EndpointSlice change to every node's data plane


def _settled(loop: LoadLoop, t0: float, final: set[str], model_at: float) -> Convergence | None:
    """The convergence, once 2 s and 100 requests of traffic have followed it; every final pod answering."""
    log = list(loop.log)
    try:
        conv = convergence(log, t0, final, model_at, PROGRAMMING_GRACE)
    except AssertionError:
        return None
    end = t0 + max(conv.seconds, conv.model_seconds + PROGRAMMING_GRACE) + 2.0
    if log[-1][0] < end or conv.requests_after_model < 100 or conv.answering_after != final:
        return None
    return conv


# ---- 4. ported from Kubernetes' Service e2e tests ----

def test_multiport_with_named_target_ports(k, cluster):
    """should serve multiport endpoints from pods: each port's endpoints are the pods naming it."""
    labels = {"app": "multiport"}
    create(k, pod("mp-1", whoami_container({"svc1": 100}, probe_port="svc1"), labels),
           pod("mp-2", whoami_container({"svc2": 101}, probe_port="svc2"), labels),
           service("multiport", labels, [{"name": "portname1", "port": 80, "targetPort": "svc1"},
                                         {"name": "portname2", "port": 81, "targetPort": "svc2"}]))
    try:
        ips = {p["metadata"]["name"]: p["status"]["podIP"] for p in wait_ready(k, "app=multiport", 2)}

        def endpoints_by_port():
            subsets = get_json(k, "endpoints", "multiport").get("subsets") or []
            return {p["name"]: sorted(f"{a['ip']}:{p['port']}" for a in s.get("addresses") or [])
                    for s in subsets for p in s["ports"]}
        want = {"portname1": [f"{ips['mp-1']}:100"], "portname2": [f"{ips['mp-2']}:101"]}
        wait_for(lambda: endpoints_by_port() == want, what="endpoints per named port")
        vip = cluster_ip(k, "multiport")
        assert wait_for(lambda: try_who(vip, 80) == "mp-1" and try_who(vip, 81) == "mp-2", what="traffic per port")
        assert http_get(vip, 80).split()[:2] == ["mp-1", "100"] and http_get(vip, 81).split()[:2] == ["mp-2", "101"]
        delete(k, "pod/mp-1")
        wait_for(lambda: endpoints_by_port() == {"portname2": want["portname2"]}, what="mp-1 gone from endpoints")
        wait_for(lambda: connect_outcome(vip, 80)[0] == "refused", what="port 80 refused without endpoints")
        assert who(vip, 81) == "mp-2"
    finally:
        delete(k, "service/multiport", "pod/mp-1", "pod/mp-2")


def test_service_without_endpoints_refuses_at_once(k, cluster):
    """should be rejected when no endpoints exist: REFUSED at once (REJECT, not DROP), TCP and UDP."""
    create(k, service("empty", {"app": "nothing-here"}, [
        {"name": "tcp", "port": 80, "targetPort": 8080},
        {"name": "udp", "port": 80, "protocol": "UDP", "targetPort": 8080}], "NodePort"))
    try:
        wait_for(lambda: k.ok("get", "endpointslices", "-l", "kubernetes.io/service-name=empty", "-o", "name"),
                 what="the empty EndpointSlice")
        assert k.ok("get", "endpoints", "empty", "--no-headers").split()[1] == "<none>"
        # Nothing to wait for: an unprogrammed address refuses too. The grace lets every proxy
        # program the service, so that its REJECT rules are what answers below.
        time.sleep(PROGRAMMING_GRACE)
        tcp_np, udp_np = (p["nodePort"] for p in svc_json(k, "empty")["spec"]["ports"])
        vip = cluster_ip(k, "empty")
        for host, port in [(vip, 80)] + [(ip, tcp_np) for ip in node_ips(cluster)]:
            outcome, seconds = connect_outcome(host, port)
            assert outcome == "refused" and seconds < 1, (host, port, outcome, seconds)
        for host, port in [(vip, 80)] + [(ip, udp_np) for ip in node_ips(cluster)]:
            outcome, _reply, seconds = udp_outcome(host, port)
            assert outcome == "refused" and seconds < 1, ("udp", host, port, outcome, seconds)
    finally:
        delete(k, "service/empty")


def test_node_port_collision_range_and_release(k, cluster, whoami):
    """should prevent NodePort collisions / check NodePort out-of-range / release NodePorts on delete."""
    backend = [{"port": 80, "targetPort": "http", "nodePort": 30100}]
    create(k, service("np-a", {"app": "whoami"}, backend, "NodePort"))
    try:
        clash = k.run("create", "-f", "-", input=as_input(service("np-b", {"app": "whoami"}, backend, "NodePort")))
        assert clash.returncode == 1
        assert ('The Service "np-b" is invalid: spec.ports[0].nodePort: Invalid value: 30100: '
                'provided port is already allocated') in clash.stderr, clash.stderr
        low = k.run("create", "-f", "-", input=as_input(service(
            "np-low", {"app": "whoami"}, [{"port": 80, "nodePort": 29999}], "NodePort")))
        assert low.returncode == 1
        assert ("spec.ports[0].nodePort: Invalid value: 29999: provided port is not in the valid range. "
                "The range of valid ports is 30000-32767") in low.stderr, low.stderr
        high = k.run("patch", "svc", "np-a", "--type=json",
                     "-p", '[{"op": "replace", "path": "/spec/ports/0/nodePort", "value": 32768}]')
        assert high.returncode == 1 and "32768: provided port is not in the valid range" in high.stderr, high.stderr
        for ip in node_ips(cluster):
            assert wait_for(lambda ip=ip: try_who(ip, 30100), what=f"np-a via {ip}") in whoami
        delete(k, "service/np-a")
        for ip in node_ips(cluster):  # released: nothing answers there any more
            wait_for(lambda ip=ip: connect_outcome(ip, 30100)[0] == "refused", timeout=5, what=f"{ip}:30100 closed")
        assert "service/np-b created" in create(k, service("np-b", {"app": "whoami"}, backend, "NodePort"))
        for ip in node_ips(cluster):
            assert wait_for(lambda ip=ip: try_who(ip, 30100), what=f"np-b via {ip}") in whoami
        auto = create(k, service("np-auto", {"app": "whoami"}, [{"port": 80}], "NodePort"))
        assert "created" in auto and 30000 <= node_port(k, "np-auto") <= 32767
    finally:
        delete(k, "service/np-a", "service/np-b", "service/np-auto")


def _patch(k, name: str, patch: dict) -> None:
    k.ok("patch", "svc", name, "-p", json.dumps(patch))


def test_type_changes(k, cluster, whoami):
    """ClusterIP → NodePort → LoadBalancer → ClusterIP → ExternalName → ClusterIP, serving all along."""
    create(k, service("morph", {"app": "whoami"}, [{"port": 80, "targetPort": "http"}]))
    try:
        vip = cluster_ip(k, "morph")
        assert wait_for(lambda: try_who(vip, 80), what="ClusterIP") in whoami
        _patch(k, "morph", {"spec": {"type": "NodePort"}})
        np = node_port(k, "morph")
        assert 30000 <= np <= 32767 and cluster_ip(k, "morph") == vip
        for ip in node_ips(cluster):
            assert wait_for(lambda ip=ip: try_who(ip, np), what=f"NodePort via {ip}") in whoami
        _patch(k, "morph", {"spec": {"type": "LoadBalancer"}})
        lb_ip = _ingress_ip(k, "morph")
        assert lb_ip.startswith(PLANES[cluster.plane]["lb_pool"].rsplit(".", 1)[0] + ".")
        assert svc_row(k, "morph")[3] == lb_ip and node_port(k, "morph") == np
        assert wait_for(lambda: try_who(lb_ip, 80), what="LoadBalancer IP") in whoami
        _patch(k, "morph", {"spec": {"type": "ClusterIP"}})
        spec = svc_json(k, "morph")["spec"]
        assert "nodePort" not in spec["ports"][0] and spec["clusterIP"] == vip
        wait_for(lambda: connect_outcome(cluster.node_ip(1), np)[0] == "refused", timeout=5, what="nodePort closed")
        wait_for(lambda: not svc_json(k, "morph").get("status", {}).get("loadBalancer", {}).get("ingress"),
                 timeout=5, what="LoadBalancer ingress cleared")
        _patch(k, "morph", {"spec": {"type": "ExternalName", "externalName": "example.com"}})
        spec = svc_json(k, "morph")["spec"]
        assert not spec.get("clusterIP") and not spec.get("clusterIPs")
        row = svc_row(k, "morph")
        assert row[1:4] == ["ExternalName", "<none>", "example.com"], row
        wait_for(lambda: connect_outcome(vip, 80)[0] == "refused", timeout=5, what="old ClusterIP unserved")
        _patch(k, "morph", {"spec": {"type": "ClusterIP", "externalName": None}})
        new_vip = cluster_ip(k, "morph")
        assert new_vip and svc_row(k, "morph")[1] == "ClusterIP"
        assert wait_for(lambda: try_who(new_vip, 80), what="ClusterIP again") in whoami
    finally:
        delete(k, "service/morph")


def _ingress_ip(k, name: str) -> str:
    def ip():
        ingress = svc_json(k, name).get("status", {}).get("loadBalancer", {}).get("ingress") or []
        return ingress[0].get("ip") if ingress else None
    return wait_for(ip, timeout=2, what=f"{name} EXTERNAL-IP")


def test_load_balancers_share_a_port(k, cluster, whoami):
    """Each LoadBalancer Service gets its own IP from the pool at once; several use port 80."""
    ports = [{"port": 80, "targetPort": "http"}]
    create(k, service("lb-a", {"app": "whoami"}, ports, "LoadBalancer"),
           service("lb-b", {"app": "whoami"}, ports, "LoadBalancer"))
    try:
        a, b = _ingress_ip(k, "lb-a"), _ingress_ip(k, "lb-b")
        assert a != b
        table = k.ok("get", "svc", "lb-a", "lb-b")
        assert a in table and b in table and "<pending>" not in table
        for ip in (a, b):
            assert wait_for(lambda ip=ip: try_who(ip, 80), what=f"curl http://{ip}:80") in whoami
    finally:
        delete(k, "service/lb-a", "service/lb-b")


def test_session_affinity(k, cluster, whoami):
    """ClientIP: 15 consecutive hits on one pod; switched off: spread; on again: sticky; timeout."""
    create(k, service("sticky", {"app": "whoami"}, [{"port": 80, "targetPort": "http"}], "NodePort",
                      sessionAffinity="ClientIP"))
    try:
        vip, np = cluster_ip(k, "sticky"), node_port(k, "sticky")
        frontends = [(vip, 80)] + [(ip, np) for ip in node_ips(cluster)]
        for host, port in frontends:
            wait_for(lambda h=host, p=port: try_who(h, p), what=f"{host}:{port}")
            assert len(hits(host, port, 15)) == 1, f"ClientIP affinity broken via {host}:{port}"
        _patch(k, "sticky", {"spec": {"sessionAffinity": "None"}})
        assert wait_for(lambda: len(hits(vip, 80, 30)) > 1, timeout=10, what="spread without affinity")
        _patch(k, "sticky", {"spec": {"sessionAffinity": "ClientIP"}})
        assert svc_json(k, "sticky")["spec"]["sessionAffinityConfig"]["clientIP"]["timeoutSeconds"] == 10800
        wait_for(lambda: len(hits(vip, 80, 15)) == 1, timeout=10, what="sticky again")
        _patch(k, "sticky", {"spec": {"sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 1}}}})
        wait_for(lambda: len(hits(vip, 80, 15)) == 1, timeout=10, what="sticky with a 1 s timeout")
        first = who(vip, 80)

        def moved():
            time.sleep(1.5)  # on purpose, past the 1 s timeout: the next connection chooses afresh
            return who(vip, 80) != first
        wait_for(moved, timeout=15, interval=0, what="a new pod after the affinity timeout")
    finally:
        delete(k, "service/sticky")


def test_external_traffic_policy_local(k, cluster):
    """Only local endpoints through each node; a node without one never forwards to a remote pod."""
    labels = {"app": "etp"}
    container = whoami_container({"http": WHOAMI_PORT}, probe_port="http")
    create(k, pod("etp-1", container, labels, node="node-1"), pod("etp-2", container, labels, node="node-2"),
           service("etp", labels, [{"port": 80, "targetPort": "http"}], "LoadBalancer",
                   externalTrafficPolicy="Local"))
    try:
        placed = {p["metadata"]["name"]: p["spec"]["nodeName"] for p in wait_ready(k, "app=etp", 2)}
        assert placed == {"etp-1": "node-1", "etp-2": "node-2"}
        svc = svc_json(k, "etp")
        np, hc = svc["spec"]["ports"][0]["nodePort"], svc["spec"]["healthCheckNodePort"]
        n1, n2, n3 = node_ips(cluster)
        for ip, local in ((n1, "etp-1"), (n2, "etp-2")):
            wait_for(lambda ip=ip: try_who(ip, np), what=f"NodePort via {ip}")
            assert hits(ip, np, 10) == {local: 10}
            assert _health(ip, hc) == (200, 1)
            assert who_sees(ip, np, CLIENT_IP) == (local, CLIENT_IP), "the client IP is preserved"
        outcome, _seconds = connect_outcome(n3, np, timeout=1)  # dropped or refused, never forwarded
        assert outcome in ("refused", "timeout"), outcome
        assert try_who(n3, np, timeout=1) is None
        assert _health(n3, hc) == (503, 0)
        lb_ip = _ingress_ip(k, "etp")
        assert wait_for(lambda: try_who(lb_ip, 80), what="the LoadBalancer IP with local endpoints") in placed
        _patch(k, "etp", {"spec": {"externalTrafficPolicy": "Cluster"}})
        assert "healthCheckNodePort" not in svc_json(k, "etp")["spec"]
        assert wait_for(lambda: try_who(n3, np), what="node-3 forwards once the policy is Cluster") in placed
    finally:
        delete(k, "service/etp", "pod/etp-1", "pod/etp-2")


def _health(host: str, port: int) -> tuple[int, int]:
    def ask():
        try:
            with urllib.request.urlopen(f"http://{host}:{port}/healthz", timeout=2) as resp:
                return resp.status, json.loads(resp.read())["localEndpoints"]
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())["localEndpoints"]
        except OSError:
            return None
    return wait_for(ask, timeout=5, what=f"health check {host}:{port}")


def test_publish_not_ready_addresses(k, cluster):
    """should create endpoints for unready pods: a never-ready pod serves while PNRA is true."""
    labels = {"app": "pnra"}
    container = whoami_container({"http": WHOAMI_PORT})
    container["readinessProbe"] = {"exec": {"command": ["false"]}, "periodSeconds": 1}
    create(k, pod("unready", container, labels),
           service("pnra", labels, [{"port": 80, "targetPort": "http"}], publishNotReadyAddresses=True))
    try:
        vip = cluster_ip(k, "pnra")
        assert wait_for(lambda: try_who(vip, 80), what="the unready pod via the ClusterIP") == "unready"
        assert not any(c["type"] == "Ready" and c["status"] == "True"
                       for c in get_json(k, "pod", "unready")["status"]["conditions"])
        _patch(k, "pnra", {"spec": {"publishNotReadyAddresses": False}})
        wait_for(lambda: connect_outcome(vip, 80)[0] == "refused", timeout=5, what="refused when not published")
        _patch(k, "pnra", {"spec": {"publishNotReadyAddresses": True}})
        assert wait_for(lambda: try_who(vip, 80), timeout=5, what="published again") == "unready"
    finally:
        delete(k, "service/pnra", "pod/unready")


def test_fallback_to_terminating_endpoints(k, cluster):
    """should fallback to terminating endpoints when there are no ready endpoints: a terminating pod
    that still serves keeps the Service reachable through the ClusterIP and every node."""
    container = whoami_container({"http": WHOAMI_PORT}, probe_port="http")
    container["env"] = [{"name": "IGNORE_SIGTERM", "value": "1"}]
    backend = pod("lingering", container, {"app": "lingering"})
    backend["spec"]["terminationGracePeriodSeconds"] = 30
    create(k, backend, service("lingering", {"app": "lingering"}, [{"port": 80, "targetPort": "http"}], "NodePort"))
    try:
        wait_ready(k, "app=lingering", 1)
        vip, np = cluster_ip(k, "lingering"), node_port(k, "lingering")
        frontends = [(vip, 80)] + [(ip, np) for ip in node_ips(cluster)]
        for host, port in frontends:
            assert wait_for(lambda h=host, p=port: try_who(h, p), what=f"{host}:{port}") == "lingering"
        k.ok("delete", "pod", "lingering", "--wait=false")

        def terminating_and_serving():
            slices = get_json(k, "endpointslices", "-l", "kubernetes.io/service-name=lingering")["items"]
            conds = [ep.get("conditions") or {} for s in slices for ep in s.get("endpoints") or []]
            return conds if conds and all(c.get("terminating") and c.get("serving") and not c.get("ready")
                                          for c in conds) else None
        wait_for(terminating_and_serving, timeout=10, what="a terminating, serving endpoint")
        # Nothing to wait for: the old rules reach the same pod. The grace lets every proxy
        # program the terminating endpoint, so that the fallback is what answers below.
        time.sleep(PROGRAMMING_GRACE)
        for host, port in frontends:
            assert try_who(host, port) == "lingering", f"{host}:{port} should fall back to the terminating pod"
    finally:
        k.run("delete", "pod", "lingering", "--grace-period=0", "--force", "--wait=true", timeout=60)
        delete(k, "service/lingering")


def test_same_port_on_tcp_and_udp(k, cluster):
    """should serve endpoints on same port and different protocols; removing one port stops it."""
    labels = {"app": "dual"}
    container = whoami_container({"http": WHOAMI_PORT}, probe_port="http")
    container["ports"].append({"name": "echo", "containerPort": WHOAMI_PORT, "protocol": "UDP"})
    create(k, pod("dual", container, labels),
           service("dual", labels, [{"name": "tcp", "port": 80, "targetPort": "http"},
                                    {"name": "udp", "port": 80, "protocol": "UDP", "targetPort": "echo"}],
                   "NodePort"))
    try:
        wait_ready(k, "app=dual", 1)
        svc = svc_json(k, "dual")
        vip = svc["spec"]["clusterIP"]
        tcp_np, udp_np = (p["nodePort"] for p in svc["spec"]["ports"])
        assert tcp_np and udp_np
        assert f"80:{tcp_np}/TCP,80:{udp_np}/UDP" in svc_row(k, "dual")[4]
        assert wait_for(lambda: try_who(vip, 80), what="TCP via the ClusterIP") == "dual"
        assert wait_for(lambda: udp_ask(vip, 80), what="UDP via the ClusterIP").startswith("dual 8080 ping")
        for ip in node_ips(cluster):
            assert wait_for(lambda ip=ip: try_who(ip, tcp_np), what=f"TCP via {ip}") == "dual"
            assert wait_for(lambda ip=ip: udp_ask(ip, udp_np), what=f"UDP via {ip}").startswith("dual")
        k.ok("patch", "svc", "dual", "--type=json", "-p", '[{"op": "remove", "path": "/spec/ports/1"}]')
        wait_for(lambda: udp_ask(vip, 80) is None, timeout=5, what="UDP unserved after removing its port")
        assert who(vip, 80) == "dual"
    finally:
        delete(k, "service/dual", "pod/dual")
