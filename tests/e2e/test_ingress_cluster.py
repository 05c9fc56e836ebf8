"""The built-in Ingress controller on a process cluster, with the real kubectl: the multi-tier
shape (front end calling the back end) exposed by host on every node IP and the LoadBalancer
address, path routing, TLS from a Secret (SNI), endpoints followed without restart, a missing
Service (503 and an Event), WebSocket passthrough, `kubectl create ingress` with 1.32 and 1.37."""

from __future__ import annotations

import ipaddress
import json

import pytest
from ingress_helpers import (
    get,
    https_get,
    ingress,
    manifests,
    served_cert_cn,
    try_get,
    websocket_echo,
)

from pocketkube.ingress.tls import self_signed
from pocketkube.testing.procs import Kubectl, kubectl_binaries, preferred_kubectl, running_cluster
from pocketkube.testing.requires import KUBECTL, requires
from pocketkube.testing.waits import get_json, wait_for

pytestmark = [requires(bool(kubectl_binaries()), KUBECTL), pytest.mark.e2e, pytest.mark.slow,
              pytest.mark.timeout(300)]

# This module's ranges (issue 11's ingress share: 127.181/16 and the LB pool 127.182.0.0/24).
RANGES = {"node_ip_base": "127.181.0.0", "pod_cidr_base": "127.181.0.0/17", "service_cidr": "127.181.128.0/17",
          "lb_pool": "127.182.0.0/24"}
HTTP, HTTPS = 18080, 18443
NODES = 2


@pytest.fixture(scope="module")
def cluster():
    with running_cluster("pk-ingress-", nodes=NODES, extra_args=["--ingress-http-port", str(HTTP),
                                                                 "--ingress-https-port", str(HTTPS)],
                         **RANGES) as c:
        yield c


@pytest.fixture(scope="module")
def k(cluster):
    kc = preferred_kubectl(cluster.kubeconfig)
    kc.ok("apply", "-f", "-", input=manifests())
    kc.ok("apply", "-f", "-", input=ingress("app", "app.local", [("/", "Prefix", "front", 80),
                                                                  ("/api", "Prefix", "backend", "http")]))
    kc.ok("rollout", "status", "deployment/backend", "--timeout=60s")
    kc.ok("rollout", "status", "deployment/front", "--timeout=60s")
    yield kc
    kc.close()


def answer(ip: str, host: str = "app.local", path: str = "/", want: str = "") -> str | None:
    status, body = try_get(ip, HTTP, host, path)
    return body if status == 200 and want in body else None


def lb_ip(k: Kubectl) -> str | None:
    entries = get_json(k, "ingress", "app").get("status", {}).get("loadBalancer", {}).get("ingress") or []
    return entries[0].get("ip") if entries else None


def test_multi_tier_by_host_on_every_node_ip_and_the_lb_address(k, cluster):
    for node in range(1, NODES + 1):
        body = wait_for(lambda n=node: answer(cluster.node_ip(n), want=" -> backend "), timeout=30,
                        what=f"the front end through node {node}'s Ingress listener")
        assert body.startswith("front front-") and "-> backend backend-" in body, body
    assert answer(cluster.node_ip(1), path="/api/v1", want="backend ").split()[2] == "/api/v1"
    assert answer(cluster.node_ip(1), path="/apix").startswith("front ")  # Prefix matches whole elements
    status, _, headers = get(cluster.node_ip(1), HTTP, "app.local")
    assert headers["X-Seen-Host"] == "app.local" and headers["X-Seen-Forwarded-For"]
    assert try_get(cluster.node_ip(1), HTTP, "unknown.local")[0] == 404
    ip = wait_for(lambda: lb_ip(k), timeout=30, what="status.loadBalancer.ingress")
    assert ipaddress.ip_address(ip) in ipaddress.ip_network(RANGES["lb_pool"])
    assert wait_for(lambda: answer(ip, want=" -> backend "), timeout=30, what="the app through the LB address")
    table = k.ok("get", "ingress", "app")
    assert table.split("\n")[0].split() == ["NAME", "CLASS", "HOSTS", "ADDRESS", "PORTS", "AGE"]
    assert table.split("\n")[1].split()[:5] == ["app", "pocketkube", "app.local", ip, "80"]
    classes = k.ok("get", "ingressclass")
    assert "pocketkube" in classes and "pocketkube.io/ingress" in classes
    described = k.ok("describe", "ingress", "app")
    assert "app.local" in described and "front:80" in described


def test_the_python_client_reads_ingresses_and_classes(k, cluster):
    from kubernetes import client, config

    api = client.NetworkingV1Api(config.new_client_from_config(str(cluster.kubeconfig)))
    ing = api.read_namespaced_ingress("app", "default")
    assert ing.spec.ingress_class_name == "pocketkube" and ing.spec.rules[0].host == "app.local"
    assert ing.spec.rules[0].http.paths[1].backend.service.port.name == "http"
    default = [c for c in api.list_ingress_class().items
               if c.metadata.annotations.get("ingressclass.kubernetes.io/is-default-class") == "true"]
    assert [c.spec.controller for c in default] == ["pocketkube.io/ingress"]


def test_tls_from_a_secret_by_sni(k, cluster, tmp_path):
    cert, key = self_signed("secure.local", ("secure.local",))
    (tmp_path / "tls.crt").write_bytes(cert)
    (tmp_path / "tls.key").write_bytes(key)
    k.ok("create", "secret", "tls", "secure-tls", f"--cert={tmp_path / 'tls.crt'}", f"--key={tmp_path / 'tls.key'}")
    k.ok("apply", "-f", "-", input=ingress("secure", "secure.local", [("/", "Prefix", "backend", 80)],
                                           tls_secret="secure-tls"))
    ip = cluster.node_ip(2)
    wait_for(lambda: served_cert_cn(ip, HTTPS, "secure.local") == "secure.local", timeout=20,
             what="the Secret's certificate for secure.local")
    assert served_cert_cn(ip, HTTPS, "other.local") == "Kubernetes Ingress Controller Fake Certificate"
    assert https_get(ip, HTTPS, "secure.local", cert, "/over-tls").startswith("backend backend-")
    assert "PORTS" in k.ok("get", "ingress", "secure") and "80, 443" in k.ok("get", "ingress", "secure")


def test_endpoints_followed_without_restart(k, cluster):
    ip = cluster.node_ip(1)
    k.ok("scale", "deployment/backend", "--replicas=2")

    def two() -> list[dict] | None:
        items = get_json(k, "pods", "-l", "app=backend")["items"]
        return items if len(items) == 2 else None
    pods = {p["metadata"]["name"] for p in wait_for(two, timeout=30, what="two backend pods")}

    def seen() -> set[str]:
        return {(answer(ip, path="/api") or " ? ").split()[1] for _ in range(20)}
    wait_for(lambda: pods <= seen(), timeout=30, what="both backend pods answering through the Ingress")
    victim = sorted(pods)[0]
    k.ok("delete", "pod", victim, "--wait=true")
    wait_for(lambda: victim not in seen() and len(seen() - {"?"}) == 2, timeout=60,
             what="the replacement pod answering, the deleted one gone")


def test_missing_service_answers_503_with_an_event(k, cluster):
    k.ok("apply", "-f", "-", input=ingress("broken", "broken.local", [("/", "Prefix", "nope", 80)]))
    wait_for(lambda: try_get(cluster.node_ip(1), HTTP, "broken.local")[0] == 503, timeout=20, what="a 503")

    def events() -> list[dict]:
        return get_json(k, "events", "--field-selector", "involvedObject.name=broken")["items"]
    found = wait_for(lambda: [e for e in events() if e["reason"] == "BackendUnavailable"], timeout=20,
                     what="a BackendUnavailable Event on the Ingress")
    assert found[0]["type"] == "Warning" and 'service "default/nope" not found' in found[0]["message"]
    assert found[0]["involvedObject"]["kind"] == "Ingress"


def test_websocket_through_the_ingress(k, cluster):
    wait_for(lambda: answer(cluster.node_ip(1)), timeout=30, what="the app")
    assert websocket_echo(cluster.node_ip(1), HTTP, "app.local", "hello") == "echo:hello"


@pytest.mark.parametrize("binary", sorted(kubectl_binaries()))
def test_kubectl_create_ingress(k, cluster, binary):
    kc = Kubectl(kubectl_binaries()[binary], cluster.kubeconfig)
    try:
        name = binary.replace(".", "-").replace("kubectl-", "made-")
        kc.ok("create", "ingress", name, f"--rule={name}.local/api*=backend:http")
        made = get_json(kc, "ingress", name)
        assert made["spec"]["ingressClassName"] == "pocketkube"
        assert made["spec"]["rules"][0]["http"]["paths"][0] == {
            "path": "/api", "pathType": "Prefix", "backend": {"service": {"name": "backend", "port": {"name": "http"}}}}
        wait_for(lambda: answer(cluster.node_ip(1), host=f"{name}.local", path="/api/x", want="backend "), timeout=20,
                 what=f"the Ingress {binary} created")
        bad = kc.run("create", "ingress", "bad", "--rule=bad.local/=backend:99999")
        assert bad.returncode != 0 and "Traceback" not in bad.stderr
    finally:
        kc.close()


def test_default_backend_then_deleted(k, cluster):
    fallback = {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "fallback"},
                "spec": {"defaultBackend": {"service": {"name": "backend", "port": {"number": 80}}}}}
    k.ok("apply", "-f", "-", input=json.dumps(fallback))
    body = wait_for(lambda: answer(cluster.node_ip(2), host="whatever.local", path="/x", want="backend "),
                    timeout=20, what="the default backend for an unknown host")
    assert body.split()[2] == "/x"
    assert answer(cluster.node_ip(2)).startswith("front ")  # rules still win
    k.ok("delete", "ingress", "fallback")
    wait_for(lambda: try_get(cluster.node_ip(2), HTTP, "whatever.local")[0] == 404, timeout=20,
             what="404 once the Ingress is gone")
