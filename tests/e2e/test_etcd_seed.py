"""The seed end to end on etcd: `pocketkube up --datastore etcd://...` over a 3-member etcd,
3 nodes, the seed's Deployment and NodePort Service answering on every node's 30008, and our
objects visible to etcdctl under /registry/."""

from __future__ import annotations

from pathlib import Path

import pytest
from svc_helpers import nginx_welcome, seed_pods_ready

from pocketkube.testing.etcd import HINT, etcd_cluster, have_etcd
from pocketkube.testing.procs import kubectl_binaries, preferred_kubectl, running_cluster
from pocketkube.testing.requires import KUBECTL, NGINX, have_nginx, requires
from pocketkube.testing.waits import wait_for

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
# This module's own loopback ranges (process runtime): nodes 127.231.0.1-3, pods 127.231.N.0/24.
RANGES = {"node_ip_base": "127.231.0.0", "pod_cidr_base": "127.231.0.0/17",
          "service_cidr": "127.231.128.0/18", "lb_pool": "127.231.192.0/24"}

pytestmark = [requires(have_etcd(), HINT), requires(have_nginx(), NGINX), requires(bool(kubectl_binaries()), KUBECTL),
              pytest.mark.slow, pytest.mark.timeout(240)]



def test_seed_on_etcd():
    with etcd_cluster(3) as etcd, \
            running_cluster("pk-etcd-seed-", nodes=3, extra_args=["--datastore", etcd.url], **RANGES) as cluster:
        k = preferred_kubectl(cluster.kubeconfig)
        try:
            k.ok("create", "-f", str(EXAMPLES / "deployment-definition.yaml"))
            k.ok("create", "-f", str(EXAMPLES / "service-definition.yaml"))

            pods = wait_for(lambda: seed_pods_ready(k), timeout=60, what="3 ready seed pods")
            assert len({p["spec"]["nodeName"] for p in pods}) == 3
            for i in (1, 2, 3):
                wait_for(lambda i=i: nginx_welcome(cluster.node_ip(i)), timeout=10, what=f"nginx via node {i}:30008")
            keys = etcd.etcdctl("get", "--prefix", "/registry/", "--keys-only").split()
            assert any("myapp-service" in key for key in keys), keys[:20]
            assert any("myapp-deployment" in key for key in keys)
            assert sum(1 for key in keys if "/pods/" in key) >= 3
            assert all(key.startswith("/registry/") for key in keys)
        finally:
            k.run("delete", "service/myapp-service", "deployment/myapp-deployment", "--ignore-not-found",
                  "--wait=true", timeout=60)
            k.close()
