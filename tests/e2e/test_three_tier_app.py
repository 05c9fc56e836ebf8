"""A three-tier application from manifests as a user writes them (tests/e2e/manifests/three-tier):
a web Deployment reading a ConfigMap (env and files) behind a NodePort Service, a Redis-like
StatefulSet with a volume from its volumeClaimTemplate and a headless Service, a Secret holding
the store's password, a Job that seeds the store and a CronJob run at once with
`kubectl create job --from=cronjob/...`; the code itself ships in a ConfigMap.

What is proven, on containers with the real kubectl: everything comes up from `kubectl apply -f
<dir>`, the web tier answers on every node's NodePort with the ConfigMap's greeting and title and
the data the Job wrote; the data survives deleting every pod (the store comes back on the node
that holds its volume, the claim stays bound to the same volume).
"""

from __future__ import annotations

import urllib.request
from pathlib import Path

import pytest

from pocketkube.testing import images
from pocketkube.testing.image_clusters import image_cluster
from pocketkube.testing.procs import preferred_kubectl
from pocketkube.testing.requires import BUSYBOX, CONTAINERD, have_containerd, requires
from pocketkube.testing.waits import get_json, wait_for

MANIFESTS = Path(__file__).parent / "manifests" / "three-tier"
# This module's own ranges (no other test file's, never kind's defaults).
RANGES = {"node_ip_base": "10.219.0.0", "pod_cidr_base": "10.229.0.0/16", "service_cidr": "10.239.0.0/16",
          "lb_pool": "10.219.1.0/24"}
NS = "shop"

pytestmark = [requires(have_containerd(), CONTAINERD), requires(images.have_busybox(), BUSYBOX),
              pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(420)]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with image_cluster("pk-3tier-", tmp_path_factory.mktemp("images"), ["python"], nodes=2, **RANGES) as c:
        yield c


@pytest.fixture(scope="module")
def k(cluster):
    kc = preferred_kubectl(cluster.kubeconfig)
    kc.ok("create", "namespace", NS)
    kc.ok("apply", "-n", NS, "-f", str(MANIFESTS))
    yield kc
    kc.close()


def web_page(cluster, node: int, port: int) -> str:
    """The page on a node's NodePort, or why not (the predicate of a wait: never raises)."""
    try:
        return urllib.request.urlopen(f"http://{cluster.node_ip(node)}:{port}/", timeout=5).read().decode()
    except OSError as e:
        return f"unreachable: {e}"


def node_port(k) -> int:
    return get_json(k, "service", "web", "-n", NS)["spec"]["ports"][0]["nodePort"]


def live_pods(k, selector: str) -> list[dict]:
    return [p for p in get_json(k, "pods", "-n", NS, "-l", selector)["items"]
            if not p["metadata"].get("deletionTimestamp")]


def all_ready(k, selector: str, count: int) -> bool:
    pods = live_pods(k, selector)
    return len(pods) == count and all(
        any(c["type"] == "Ready" and c["status"] == "True" for c in p.get("status", {}).get("conditions", []))
        for p in pods)


def test_the_app_comes_up_and_serves_the_seeded_data_on_every_node(k, cluster):
    k.ok("wait", "-n", NS, "--for=condition=complete", "job/seed", "--timeout=180s")
    wait_for(lambda: all_ready(k, "app=web", 2), timeout=120, what="2 web pods Ready")
    port = node_port(k)
    for node in (1, 2):
        page = wait_for(lambda n=node: "motd=hello from the seed job" in (p := web_page(cluster, n, port)) and p,
                        timeout=30, what=f"the seeded page on node {node}")
        assert page.startswith("Pocket Shop | Welcome to the shop | motd=hello from the seed job"), page
    claim = get_json(k, "pvc", "data-store-0", "-n", NS)
    assert claim["status"]["phase"] == "Bound"
    assert get_json(k, "statefulset", "store", "-n", NS)["status"]["readyReplicas"] == 1
    assert "secretKeyRef" not in page and "s3cr3t" not in page  # the password stays out of the page


def test_a_job_from_the_cronjob_runs_now(k, cluster):
    k.ok("create", "job", "-n", NS, "--from=cronjob/visits", "visits-now")
    k.ok("wait", "-n", NS, "--for=condition=complete", "job/visits-now", "--timeout=120s")
    assert "visits=1" in web_page(cluster, 1, node_port(k))


def test_the_data_survives_deleting_every_pod(k, cluster):
    store_node = live_pods(k, "app=store")[0]["spec"]["nodeName"]
    volume = get_json(k, "pvc", "data-store-0", "-n", NS)["spec"]["volumeName"]
    k.ok("delete", "pods", "-n", NS, "-l", "app in (store, web)", "--wait=true")
    wait_for(lambda: all_ready(k, "app=store", 1) and all_ready(k, "app=web", 2), timeout=180,
             what="the store and web pods back and Ready")
    assert live_pods(k, "app=store")[0]["spec"]["nodeName"] == store_node
    assert get_json(k, "pvc", "data-store-0", "-n", NS)["spec"]["volumeName"] == volume
    port = node_port(k)
    page = wait_for(lambda: "motd=hello" in (p := web_page(cluster, 2, port)) and p, timeout=30,
                    what="the page after the restart")
    assert "motd=hello from the seed job | visits=1" in page
