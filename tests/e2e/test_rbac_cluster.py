"""RBAC in a whole cluster (`pocketkube up`, process pods): the controllers and the scheduler
work under their own users (system:kube-controller-manager, system:kube-scheduler) with only
the bootstrap policy's rights; admin/edit/view are aggregated; a service account with a Role
may read pods and not delete them, through kubectl (1.32 and 1.37) and the Python client.
Address ranges of its own: nodes 127.0.77.x, pods 127.177.0.0/16, Services 127.178.0.0/16,
load balancers 127.179.0.0/24."""

from __future__ import annotations

import pytest

from pocketkube.testing.procs import Kubectl, kubectl_binaries, running_cluster
from pocketkube.testing.requires import KUBECTL, NGINX, have_nginx, require_module, requires
from pocketkube.testing.waits import wait_for

pytestmark = [requires(have_nginx(), NGINX), requires(bool(kubectl_binaries()), KUBECTL), pytest.mark.e2e,
              pytest.mark.slow, pytest.mark.timeout(240)]

SA = "system:serviceaccount:default:reader"


@pytest.fixture(scope="module")
def cluster():
    with running_cluster("pk-rbac-e2e-", nodes=2, node_ip_base="127.0.77.0", pod_cidr_base="127.177.0.0/16",
                         service_cidr="127.178.0.0/16", lb_pool="127.179.0.0/24") as c:
        yield c


@pytest.fixture
def kubectl(cluster, request, tmp_path):
    k = Kubectl(kubectl_binaries()[request.param], cluster.kubeconfig, cwd=tmp_path)
    yield k
    k.close()


def test_controllers_and_scheduler_run_under_their_own_users(cluster):
    k = Kubectl(next(iter(kubectl_binaries().values())), cluster.kubeconfig)
    try:
        k.ok("create", "deployment", "web", "--image=nginx", "--replicas=2")
        wait_for(lambda: k.ok("get", "deployment", "web", "-o", "jsonpath={.status.readyReplicas}") == "2",
                 timeout=90, what="web's two replicas ready")
        def can(user: str, *what: str) -> str:
            return k.run("auth", "can-i", *what, f"--as={user}").stdout.strip()
        kcm, scheduler = "system:kube-controller-manager", "system:kube-scheduler"
        assert (can(kcm, "create", "secrets"), can(scheduler, "create", "secrets")) == ("yes", "no")
        assert (can(kcm, "create", "pods"), can(scheduler, "create", "pods")) == ("yes", "no")
        assert can(kcm, "create", "clusterrolebindings") == can(scheduler, "create", "clusterrolebindings") == "no"
        assert can(kcm, "escalate", "clusterroles") == "yes"  # the aggregation controller's right
        cp = k.run("auth", "can-i", "create", "pods", "--subresource=binding", "--as=system:kube-scheduler")
        assert cp.stdout.strip() == "yes", cp.stderr
        log = (cluster.data_dir / "logs" / "controller-manager.log").read_text()
        assert "forbidden" not in log.lower(), log[-3000:]
        # admin, edit and view gathered their aggregate-to-* roles
        def view_rules() -> str:
            return k.ok("get", "clusterrole", "view", "-o", "jsonpath={.rules[*].resources}")
        wait_for(lambda: "pods" in view_rules(), timeout=30, what="view aggregated")
        assert "rolebindings" in k.ok("get", "clusterrole", "admin", "-o", "jsonpath={.rules[*].resources}")
        k.ok("delete", "deployment", "web")
    finally:
        k.close()


@pytest.mark.parametrize("kubectl", sorted(kubectl_binaries()), indirect=True)
def test_a_service_account_with_a_role(kubectl):
    kubectl.run("create", "role", "pod-reader", "--verb=get,list,watch", "--resource=pods")
    kubectl.run("create", "rolebinding", "reader-reads", "--role=pod-reader", "--serviceaccount=default:reader")
    kubectl.run("run", "victim", "--image=nginx")
    wait_for(lambda: kubectl.run("get", "pods", f"--as={SA}").returncode == 0, timeout=20, what="the binding")
    assert "victim" in kubectl.ok("get", "pods", f"--as={SA}")
    cp = kubectl.run("delete", "pod", "victim", f"--as={SA}")
    assert cp.returncode == 1
    assert ('pods "victim" is forbidden: User "system:serviceaccount:default:reader" cannot delete resource '
            '"pods" in API group "" in the namespace "default"') in cp.stderr
    assert kubectl.run("auth", "can-i", "delete", "pods", f"--as={SA}").stdout.strip() == "no"
    out = kubectl.ok("auth", "can-i", "--list", f"--as={SA}")
    assert any(line.split()[:1] == ["pods"] and "[get list watch]" in line for line in out.splitlines()), out
    # a view holder cannot hand out more than view: a RoleBinding to edit is refused
    kubectl.run("create", "rolebinding", "reader-views", "--clusterrole=view", "--serviceaccount=default:reader")
    kubectl.run("create", "role", "binder", "--verb=create", "--resource=rolebindings.rbac.authorization.k8s.io")
    kubectl.run("create", "rolebinding", "reader-binds", "--role=binder", "--serviceaccount=default:reader")
    wait_for(lambda: kubectl.run("auth", "can-i", "create", "rolebindings", f"--as={SA}").stdout.strip() == "yes",
             timeout=20, what="binder bound")
    cp = kubectl.run("create", "rolebinding", "escalate", "--clusterrole=edit", f"--user={SA}", f"--as={SA}")
    assert cp.returncode == 1 and "is attempting to grant RBAC permissions not currently held" in cp.stderr


def test_python_client_as_a_service_account(cluster):
    kubernetes = require_module("kubernetes")
    from kubernetes import client, config

    api_client = config.new_client_from_config(str(cluster.kubeconfig))
    admin = client.RbacAuthorizationV1Api(api_client)
    admin.create_namespaced_role("default", client.V1Role(
        metadata=client.V1ObjectMeta(name="py-reader"),
        rules=[client.V1PolicyRule(verbs=["get", "list"], api_groups=[""], resources=["pods"])]))
    admin.create_namespaced_role_binding("default", client.V1RoleBinding(
        metadata=client.V1ObjectMeta(name="py-reader"),
        role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="Role", name="py-reader"),
        subjects=[client.RbacV1Subject(kind="ServiceAccount", name="py", namespace="default")]))
    as_sa = config.new_client_from_config(str(cluster.kubeconfig))
    as_sa.set_default_header("Impersonate-User", "system:serviceaccount:default:py")
    v1 = client.CoreV1Api(as_sa)
    wait_for(lambda: v1.list_namespaced_pod("default") is not None, timeout=20, what="py may list pods")
    with pytest.raises(kubernetes.client.ApiException) as e:
        v1.delete_namespaced_pod("anything", "default")
    assert e.value.status == 403
    with pytest.raises(kubernetes.client.ApiException) as e:
        v1.list_namespaced_pod("kube-system")
    assert e.value.status == 403
    roles = [r.metadata.name for r in admin.list_cluster_role().items]
    assert "cluster-admin" in roles and "system:controller:replicaset-controller" in roles
