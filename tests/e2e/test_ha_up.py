"""`pocketkube up` with leader election on (the default): the controller manager and the
scheduler hold their Leases in kube-system and act (a Deployment becomes ready, under their
own users with the bootstrap policy's rights only), and each agent keeps the API servers it
learned from the `kubernetes` endpoints in its data dir. Address ranges of its own: nodes
127.216.0.x, pods 127.217.0.0/16, Services 127.218.0.0/16, load balancers 127.219.0.0/24."""

from __future__ import annotations

import json

import pytest

from pocketkube.client.servers import load_servers
from pocketkube.testing.procs import kubectl_binaries, preferred_kubectl, running_cluster
from pocketkube.testing.requires import KUBECTL, NGINX, have_nginx, requires
from pocketkube.testing.waits import wait_for

pytestmark = [requires(have_nginx(), NGINX), requires(bool(kubectl_binaries()), KUBECTL), pytest.mark.e2e,
              pytest.mark.timeout(180)]


def test_up_elects_leaders_and_agents_learn_the_servers():
    with running_cluster("pk-ha-up-", nodes=1, node_ip_base="127.216.0.0", pod_cidr_base="127.217.0.0/16",
                         service_cidr="127.218.0.0/16", lb_pool="127.219.0.0/24") as cluster:
        k = preferred_kubectl(cluster.kubeconfig)
        try:
            def lease(name: str) -> dict:
                return json.loads(k.ok("get", "lease", "-n", "kube-system", name, "-o", "json"))
            wait_for(lambda: k.run("get", "lease", "-n", "kube-system", "kube-scheduler").returncode == 0,
                     timeout=30, what="the scheduler's lease")
            for name in ("kube-controller-manager", "kube-scheduler"):
                spec = lease(name)["spec"]
                host, _, uid = spec["holderIdentity"].rpartition("_")
                assert host and len(uid) == 36, spec
                assert spec["leaseDurationSeconds"] == 15
            k.ok("create", "deployment", "web", "--image=nginx", "--replicas=2")
            wait_for(lambda: k.ok("get", "deployment", "web", "-o", "jsonpath={.status.readyReplicas}") == "2",
                     timeout=90, what="web's two replicas ready")
            events = k.ok("get", "events", "-n", "kube-system", "--field-selector", "reason=LeaderElection")
            assert "became leader" in events
            log = (cluster.data_dir / "logs" / "controller-manager.log").read_text()
            assert "forbidden" not in log.lower(), log[-3000:]
            kept = cluster.data_dir / "nodes" / "node-1" / "api-servers.json"
            wait_for(lambda: load_servers(kept), timeout=30, what="the agent's kept server list")
            assert load_servers(kept)[0].startswith("https://127.0.0.1:")
            k.ok("delete", "deployment", "web")
        finally:
            k.close()
