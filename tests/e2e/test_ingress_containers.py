"""The built-in Ingress controller on containers (containerd, the python test image): the
multi-tier app exposed by host through every node IP and the LoadBalancer address, path routing,
TLS by SNI, a scale-up followed, WebSocket passthrough."""

from __future__ import annotations

import pytest
from ingress_helpers import ingress, manifests, served_cert_cn, try_get, websocket_echo

from pocketkube.ingress.tls import self_signed
from pocketkube.testing import images
from pocketkube.testing.image_clusters import image_cluster
from pocketkube.testing.procs import preferred_kubectl
from pocketkube.testing.requires import BUSYBOX, CONTAINERD, have_containerd, requires
from pocketkube.testing.waits import get_json, wait_for

# This module's ranges (issue 11's ingress share: 10.181-10.183).
RANGES = {"node_ip_base": "10.181.0.0", "pod_cidr_base": "10.182.0.0/16", "service_cidr": "10.183.0.0/16",
          "lb_pool": "10.181.1.0/24"}
HTTP, HTTPS = 18080, 18443
NODES = 2

pytestmark = [requires(have_containerd(), CONTAINERD), requires(images.have_busybox(), BUSYBOX),
              pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(420)]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    args = ["--ingress-http-port", str(HTTP), "--ingress-https-port", str(HTTPS)]
    with image_cluster("pk-ingc-", tmp_path_factory.mktemp("images"), ["python"], nodes=NODES,
                       extra_args=args, **RANGES) as c:
        yield c


@pytest.fixture(scope="module")
def k(cluster):
    kc = preferred_kubectl(cluster.kubeconfig)
    # The front end calls the back end by its Service name, through the cluster DNS.
    kc.ok("apply", "-f", "-", input=manifests(backend_url="http://backend/from-front"))
    kc.ok("apply", "-f", "-", input=ingress("app", "app.local", [("/", "Prefix", "front", 80),
                                                                  ("/api", "Exact", "backend", "http")]))
    kc.ok("rollout", "status", "deployment/backend", "--timeout=120s")
    kc.ok("rollout", "status", "deployment/front", "--timeout=120s")
    yield kc
    kc.close()


def answer(ip: str, host: str = "app.local", path: str = "/", want: str = "") -> str | None:
    status, body = try_get(ip, HTTP, host, path)
    return body if status == 200 and want in body else None


def test_multi_tier_through_every_node_ip_and_the_lb_address(k, cluster):
    for node in range(1, NODES + 1):
        body = wait_for(lambda n=node: answer(cluster.node_ip(n), want=" -> backend "), timeout=60,
                        what=f"the front end through node {node}")
        assert body.startswith("front front-") and "-> backend backend-" in body, body
    assert answer(cluster.node_ip(1), path="/api", want="backend ").split()[2] == "/api"
    assert answer(cluster.node_ip(1), path="/api/x").startswith("front ")  # /api is Exact
    ip = wait_for(lambda: (get_json(k, "ingress", "app").get("status", {}).get("loadBalancer", {})
                           .get("ingress") or [{}])[0].get("ip"), timeout=30, what="the Ingress's LB address")
    assert ip.startswith("10.181.1.")
    assert wait_for(lambda: answer(ip, want=" -> backend "), timeout=30, what="the app through the LB address")


def test_tls_and_websocket(k, cluster, tmp_path):
    cert, key = self_signed("secure.local", ("secure.local",))
    (tmp_path / "tls.crt").write_bytes(cert)
    (tmp_path / "tls.key").write_bytes(key)
    k.ok("create", "secret", "tls", "secure-tls", f"--cert={tmp_path / 'tls.crt'}", f"--key={tmp_path / 'tls.key'}")
    k.ok("apply", "-f", "-", input=ingress("secure", "secure.local", [("/", "Prefix", "backend", 80)],
                                           tls_secret="secure-tls"))
    wait_for(lambda: served_cert_cn(cluster.node_ip(2), HTTPS, "secure.local") == "secure.local", timeout=20,
             what="the Secret's certificate")
    wait_for(lambda: answer(cluster.node_ip(1)), timeout=30, what="the app")
    assert websocket_echo(cluster.node_ip(1), HTTP, "app.local", "hello") == "echo:hello"


def test_scale_up_is_followed(k, cluster):
    k.ok("scale", "deployment/backend", "--replicas=3")
    k.ok("rollout", "status", "deployment/backend", "--timeout=120s")
    names = {p["metadata"]["name"] for p in get_json(k, "pods", "-l", "app=backend")["items"]}

    def seen() -> set[str]:
        return {(answer(cluster.node_ip(2), path="/api") or " ? ").split()[1] for _ in range(30)}
    wait_for(lambda: names <= seen(), timeout=30, what="all three backend pods answering")
