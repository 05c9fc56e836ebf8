"""The bootstrap policy: the ClusterRoles and ClusterRoleBindings every cluster starts with, as
upstream's plugin/pkg/auth/authorizer/rbac/bootstrappolicy defines them (only the rights each
role needs; the controllers' roles for the controllers this project runs or plans to run).

Rules are written as `rule("get list watch", "", "pods services")`: verbs, API groups
(comma-separated, "" the core group) and resources (`names=` narrows to resource names)."""

from __future__ import annotations

GROUP = "rbac.authorization.k8s.io"
AUTOUPDATE = "rbac.authorization.kubernetes.io/autoupdate"
BOOTSTRAP_LABEL = {"kubernetes.io/bootstrapping": "rbac-defaults"}
AGGREGATE = "rbac.authorization.k8s.io/aggregate-to-"
CONTROLLER_PREFIX = "system:controller:"
DNS_USER = "system:pocketkube:dns"  # the cluster DNS's static user (cluster.py gives it a token)

READ = "get list watch"
# The built-in Ingress controller's user and ClusterRole (apiserver/pki.py issues its token).
INGRESS_USER = "system:pocketkube-ingress"
WRITE = "create delete deletecollection patch update"


def rule(verbs: str, groups: str, resources: str, names: str = "") -> dict:
    out = {"verbs": verbs.split(), "apiGroups": groups.split(","), "resources": resources.split()}
    if names:
        out["resourceNames"] = names.split()
    return out


def urls(verbs: str, paths: str) -> dict:
    return {"verbs": verbs.split(), "nonResourceURLs": paths.split()}


def _events() -> dict:
    return rule("create update patch", ",events.k8s.io", "events")


def cluster_role(name: str, rules: list[dict], labels: dict | None = None, aggregate: str = "") -> dict:
    role = {"apiVersion": f"{GROUP}/v1", "kind": "ClusterRole",
            "metadata": {"name": name, "labels": {**BOOTSTRAP_LABEL, **(labels or {})},
                         "annotations": {AUTOUPDATE: "true"}},
            "rules": rules}
    if aggregate:
        role["aggregationRule"] = {"clusterRoleSelectors": [{"matchLabels": {AGGREGATE + aggregate: "true"}}]}
    return role


def cluster_binding(role: str, subjects: list[dict], name: str = "") -> dict:
    return {"apiVersion": f"{GROUP}/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": name or role, "labels": dict(BOOTSTRAP_LABEL), "annotations": {AUTOUPDATE: "true"}},
            "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": role}, "subjects": subjects}


def group(name: str) -> dict:
    return {"apiGroup": GROUP, "kind": "Group", "name": name}


def user(name: str) -> dict:
    return {"apiGroup": GROUP, "kind": "User", "name": name}


def service_account(namespace: str, name: str) -> dict:
    return {"kind": "ServiceAccount", "name": name, "namespace": namespace}


_KUBELET_CLIENT_SIGNER = "kubernetes.io/kube-apiserver-client-kubelet"
_CLIENT_SIGNER = "kubernetes.io/kube-apiserver-client"
_CSR = "certificatesigningrequests"
_CERTS = "certificates.k8s.io"
BOOTSTRAPPERS = "system:bootstrappers"
NODECLIENT = f"system:certificates.k8s.io:{_CSR}:nodeclient"
SELFNODECLIENT = f"system:certificates.k8s.io:{_CSR}:selfnodeclient"

_DISCOVERY_URLS = "/api /api/* /apis /apis/* /healthz /livez /openapi /openapi/* /readyz /version /version/"
_PUBLIC_URLS = "/healthz /livez /readyz /version /version/"

_VIEW = [
    rule(READ, "", "pods pods/status pods/log configmaps endpoints persistentvolumeclaims "
                   "persistentvolumeclaims/status replicationcontrollers replicationcontrollers/scale "
                   "replicationcontrollers/status serviceaccounts services services/status bindings events "
                   "limitranges namespaces/status resourcequotas resourcequotas/status namespaces"),
    rule(READ, "discovery.k8s.io", "endpointslices"),
    rule(READ, "apps", "controllerrevisions daemonsets daemonsets/status deployments deployments/scale "
                       "deployments/status replicasets replicasets/scale replicasets/status statefulsets "
                       "statefulsets/scale statefulsets/status"),
    rule(READ, "autoscaling", "horizontalpodautoscalers horizontalpodautoscalers/status"),
    rule(READ, "batch", "cronjobs cronjobs/status jobs jobs/status"),
    rule(READ, "policy", "poddisruptionbudgets poddisruptionbudgets/status"),
    rule(READ, "networking.k8s.io", "ingresses ingresses/status networkpolicies"),
]
_EDIT = [
    rule(WRITE, "", "pods pods/attach pods/exec pods/portforward pods/proxy"),
    rule("create", "", "pods/eviction"),
    rule(WRITE, "", "configmaps events persistentvolumeclaims replicationcontrollers "
                    "replicationcontrollers/scale secrets serviceaccounts services services/proxy"),
    rule("create", "", "serviceaccounts/token"),
    rule("impersonate", "", "serviceaccounts"),
    rule(READ, "", "pods/attach pods/exec pods/portforward pods/proxy secrets services/proxy"),
    rule(WRITE, "apps", "daemonsets deployments deployments/rollback deployments/scale replicasets "
                        "replicasets/scale statefulsets statefulsets/scale"),
    rule(WRITE, "autoscaling", "horizontalpodautoscalers"),
    rule(WRITE, "batch", "cronjobs jobs"),
    rule(WRITE, "policy", "poddisruptionbudgets"),
    rule(WRITE, "networking.k8s.io", "ingresses networkpolicies"),
    rule(WRITE, "coordination.k8s.io", "leases"),
]
_ADMIN = [
    rule("create", "authorization.k8s.io", "localsubjectaccessreviews"),
    rule(f"{WRITE} {READ}", GROUP, "rolebindings roles"),
]

_CONTROLLERS: dict[str, list[dict]] = {
    "clusterrole-aggregation-controller": [rule("escalate get list watch update patch", GROUP, "clusterroles")],
    "cronjob-controller": [
        rule("get list watch update", "batch", "cronjobs"),
        rule("get list watch create update delete patch", "batch", "jobs"),
        rule("update", "batch", "cronjobs/status cronjobs/finalizers"),
        rule("list watch delete", "", "pods"), _events()],
    "daemon-set-controller": [
        rule(READ, "extensions,apps", "daemonsets"),
        rule("update", "extensions,apps", "daemonsets/status daemonsets/finalizers"),
        rule("list watch", "", "nodes"),
        rule("list watch create delete patch", "", "pods"),
        rule("create", "", "pods/binding"),
        rule("get list watch create delete update patch", "apps", "controllerrevisions"), _events()],
    "deployment-controller": [
        rule("get list watch update", "extensions,apps", "deployments"),
        rule("update", "extensions,apps", "deployments/status deployments/finalizers"),
        rule("get list watch create update patch delete", "apps,extensions", "replicasets"),
        rule("get list watch update", "", "pods"), _events()],
    "certificate-controller": [
        rule("get list watch delete", "certificates.k8s.io", "certificatesigningrequests"),
        rule("update", "certificates.k8s.io", "certificatesigningrequests/status certificatesigningrequests/approval"),
        rule("approve sign", "certificates.k8s.io", "signers", names=f"{_KUBELET_CLIENT_SIGNER} {_CLIENT_SIGNER}"),
        rule("create", "authentication.k8s.io", "tokenreviews"),
        rule("create", "authorization.k8s.io", "subjectaccessreviews"), _events()],
    "disruption-controller": [
        rule(READ, "extensions,apps", "deployments"),
        rule(READ, "apps,extensions", "replicasets"),
        rule(READ, "", "replicationcontrollers"),
        rule(READ, "policy", "poddisruptionbudgets"),
        rule(READ, "apps", "statefulsets"),
        rule("update", "policy", "poddisruptionbudgets/status"),
        rule("patch update", "", "pods/status"),
        rule("get", "*", "*/scale"), _events()],
    "endpoint-controller": [
        rule(READ, "", "services pods"),
        rule("get list watch create update delete", "", "endpoints"),
        rule("create", "", "endpoints/restricted"), _events()],
    "endpointslice-controller": [
        rule(READ, "", "services pods nodes"),
        rule("update", "", "services/finalizers"),
        rule("get list watch create update delete", "discovery.k8s.io", "endpointslices"), _events()],
    "generic-garbage-collector": [rule("get list watch patch update delete", "*", "*"), _events()],
    "job-controller": [
        rule("get list watch update patch", "batch", "jobs"),
        rule("update", "batch", "jobs/status jobs/finalizers"),
        rule("list watch create delete patch", "", "pods"), _events()],
    "namespace-controller": [
        rule("get list watch delete", "", "namespaces"),
        rule("update", "", "namespaces/finalize namespaces/status"),
        rule("get list watch delete deletecollection", "*", "*")],
    "node-controller": [
        rule("get list watch update delete patch", "", "nodes"),
        rule("patch update", "", "nodes/status pods/status"),
        rule("list watch get delete", "", "pods"), _events()],
    "persistent-volume-binder": [
        rule("get list watch update create delete", "", "persistentvolumes"),
        rule("update", "", "persistentvolumes/status persistentvolumeclaims/status"),
        rule("get list watch update", "", "persistentvolumeclaims"),
        rule("list watch get create delete", "", "pods"),
        rule(READ, "storage.k8s.io", "storageclasses"),
        rule("list watch", "", "nodes"), _events(),
        rule("watch", "", "events"), rule("get", "", "services")],
    "pod-garbage-collector": [
        rule("list watch delete", "", "pods"), rule(READ, "", "nodes"), rule("patch", "", "pods/status")],
    "pv-protection-controller": [rule("get list watch update", "", "persistentvolumes"), _events()],
    "pvc-protection-controller": [
        rule("get list watch update", "", "persistentvolumeclaims"), rule("list watch get", "", "pods"), _events()],
    "replicaset-controller": [
        rule("get list watch update", "apps,extensions", "replicasets"),
        rule("update", "apps,extensions", "replicasets/status replicasets/finalizers"),
        rule("list watch patch create delete", "", "pods"), _events()],
    "replication-controller": [
        rule("get list watch update", "", "replicationcontrollers"),
        rule("update", "", "replicationcontrollers/status replicationcontrollers/finalizers"),
        rule("list watch patch create delete", "", "pods"), _events()],
    "resourcequota-controller": [
        rule("list watch", "*", "*"), rule("update", "", "resourcequotas/status"), _events()],
    "root-ca-cert-publisher": [rule("create update", "", "configmaps"), _events()],
    "service-account-controller": [rule("create", "", "serviceaccounts"), _events()],
    "service-controller": [
        rule(READ, "", "services"), rule("patch update", "", "services/status"),
        rule("list watch", "", "nodes"), _events()],
    "statefulset-controller": [
        rule("list watch", "", "pods"),
        rule(READ, "apps", "statefulsets"),
        rule("update", "apps", "statefulsets/status statefulsets/finalizers"),
        rule("get create delete update patch", "", "pods"),
        rule("get create delete update patch list watch", "apps", "controllerrevisions"),
        rule("get create list watch", "", "persistentvolumeclaims"),
        rule("update delete", "", "persistentvolumeclaims"),
        rule("update", "", "pods/finalizers"), _events()],
    # upstream's is a Role in kube-system; here a ClusterRole, as every controller role
    "token-cleaner": [rule("delete get list watch", "", "secrets"), _events()],
    "ttl-after-finished-controller": [rule("get list watch delete", "batch", "jobs"), _events()],
}


def cluster_roles() -> list[dict]:
    roles = [
        cluster_role("cluster-admin", [rule("*", "*", "*"), urls("*", "*")]),
        cluster_role("admin", [], aggregate="admin"),
        cluster_role("edit", [], {AGGREGATE + "admin": "true"}, aggregate="edit"),
        cluster_role("view", [], {AGGREGATE + "edit": "true"}, aggregate="view"),
        cluster_role("system:aggregate-to-admin", _ADMIN, {AGGREGATE + "admin": "true"}),
        cluster_role("system:aggregate-to-edit", _EDIT, {AGGREGATE + "edit": "true"}),
        cluster_role("system:aggregate-to-view", _VIEW, {AGGREGATE + "view": "true"}),
        cluster_role("system:basic-user", [
            rule("create", "authorization.k8s.io", "selfsubjectaccessreviews selfsubjectrulesreviews"),
            rule("create", "authentication.k8s.io", "selfsubjectreviews")]),
        cluster_role("system:discovery", [urls("get", _DISCOVERY_URLS)]),
        cluster_role("system:public-info-viewer", [urls("get", _PUBLIC_URLS)]),
        cluster_role("system:monitoring", [urls("get", "/metrics /metrics/slis /livez /readyz /healthz /livez/* "
                                                       "/readyz/* /healthz/*")]),
        cluster_role("system:auth-delegator", [rule("create", "authentication.k8s.io", "tokenreviews"),
                                               rule("create", "authorization.k8s.io", "subjectaccessreviews")]),
        cluster_role("system:kube-dns", [rule("list watch", "", "endpoints services")]),
        # The cluster DNS (`pocketkube dns`): kubeadm's CoreDNS role, and the kube-dns Service,
        # Endpoints and EndpointSlice it keeps pointing at itself (create cannot be narrowed by name).
        cluster_role("system:coredns", [rule("list watch", "", "endpoints services pods namespaces"),
                                        rule("list watch", "discovery.k8s.io", "endpointslices")]),
        cluster_role("system:pocketkube:dns", [
            rule("create", "", "services endpoints"), rule("create", "discovery.k8s.io", "endpointslices"),
            rule("get update delete", "", "services endpoints", names="kube-dns"),
            rule("get update delete", "discovery.k8s.io", "endpointslices", names="kube-dns")]),
        cluster_role("system:service-account-issuer-discovery", [
            urls("get", "/.well-known/openid-configuration /.well-known/openid-configuration/ /openid/v1/jwks "
                        "/openid/v1/jwks/")]),
        cluster_role("system:node-proxier", [
            rule("list watch", "", "services endpoints"), rule(READ, "", "nodes"),
            rule("create patch update", ",events.k8s.io", "events"),
            rule("list watch", "discovery.k8s.io", "endpointslices")]),
        cluster_role("system:kube-scheduler", [
            _events(),
            rule("create", "coordination.k8s.io", "leases"),
            rule("get update", "coordination.k8s.io", "leases", names="kube-scheduler"),
            rule("create", "", "endpoints"),
            rule("get update", "", "endpoints", names="kube-scheduler"),
            rule(READ, "", "nodes"),
            rule("delete get list watch", "", "pods"),
            rule("create", "", "bindings pods/binding"),
            rule("patch update", "", "pods/status"),
            rule(READ, "", "replicationcontrollers services"),
            rule(READ, "apps,extensions", "replicasets"),
            rule(READ, "apps", "statefulsets"),
            rule(READ, "policy", "poddisruptionbudgets"),
            rule(READ, "", "persistentvolumeclaims persistentvolumes"),
            rule("create", "authentication.k8s.io", "tokenreviews"),
            rule("create", "authorization.k8s.io", "subjectaccessreviews"),
            rule(READ, "storage.k8s.io", "csinodes csidrivers csistoragecapacities storageclasses"),
            rule("list watch", "", "namespaces configmaps")]),
        # The scheduler's volume binding: picks a node for a WaitForFirstConsumer claim.
        cluster_role("system:volume-scheduler", [
            rule("get list watch patch update", "", "persistentvolumes persistentvolumeclaims"),
            rule(READ, "storage.k8s.io", "storageclasses")]),
        cluster_role("system:kube-controller-manager", [
            _events(),
            rule("create", "coordination.k8s.io", "leases"),
            rule("get update", "coordination.k8s.io", "leases", names="kube-controller-manager"),
            rule("create", "", "endpoints"),
            rule("get update", "", "endpoints", names="kube-controller-manager"),
            rule("create", "", "secrets serviceaccounts"),
            rule("delete", "", "secrets"),
            rule("get", "", "configmaps namespaces secrets serviceaccounts"),
            rule("update", "", "secrets serviceaccounts"),
            rule("create", "authentication.k8s.io", "tokenreviews"),
            rule("create", "authorization.k8s.io", "subjectaccessreviews"),
            rule("list watch", "*", "*"),
            rule("create", "", "serviceaccounts/token")]),
        # TLS bootstrap (kubelet-tls-bootstrapping): who may post CSRs, and which CSRs the
        # approver signs off for whom (a SubjectAccessReview on these subresources).
        cluster_role("system:node-bootstrapper", [rule("create get list watch", _CERTS, _CSR)]),
        cluster_role(NODECLIENT, [rule("create", _CERTS, f"{_CSR}/nodeclient")]),
        cluster_role(SELFNODECLIENT, [rule("create", _CERTS, f"{_CSR}/selfnodeclient")]),
        cluster_role(f"system:{_CERTS}:kube-apiserver-client-approver",
                     [rule("approve", _CERTS, "signers", names=_CLIENT_SIGNER)]),
        cluster_role(f"system:{_CERTS}:kube-apiserver-client-kubelet-approver",
                     [rule("approve", _CERTS, "signers", names=_KUBELET_CLIENT_SIGNER)]),
        # The built-in Ingress controller (pocketkube/ingress), as ingress-nginx's ClusterRole: it reads
        # the Ingresses and what they lead to (TLS Secrets included), writes their status and Events,
        # and keeps its own LoadBalancer Service and that Service's EndpointSlice.
        cluster_role(INGRESS_USER, [
            rule(READ, "networking.k8s.io", "ingresses ingressclasses"),
            rule("update patch", "networking.k8s.io", "ingresses/status"),
            rule(READ, "", "services secrets"),
            rule("create update patch", "", "services"),
            rule(READ + " create update patch delete", "discovery.k8s.io", "endpointslices"),
            rule("create patch update", ",events.k8s.io", "events")]),
    ]
    roles += [cluster_role(CONTROLLER_PREFIX + name, rules) for name, rules in _CONTROLLERS.items()]
    return roles


def cluster_role_bindings() -> list[dict]:
    bindings = [
        cluster_binding("cluster-admin", [group("system:masters")]),
        cluster_binding("system:basic-user", [group("system:authenticated")]),
        cluster_binding("system:discovery", [group("system:authenticated")]),
        cluster_binding("system:public-info-viewer", [group("system:authenticated"),
                                                      group("system:unauthenticated")]),
        cluster_binding("system:monitoring", [group("system:monitoring")]),
        cluster_binding("system:kube-dns", [service_account("kube-system", "kube-dns")]),
        cluster_binding("system:coredns", [user(DNS_USER)]),
        cluster_binding("system:pocketkube:dns", [user(DNS_USER)]),
        cluster_binding("system:service-account-issuer-discovery", [group("system:serviceaccounts")]),
        cluster_binding("system:node-proxier", [user("system:kube-proxy")]),
        cluster_binding("system:kube-controller-manager", [user("system:kube-controller-manager")]),
        cluster_binding("system:kube-scheduler", [user("system:kube-scheduler")]),
        cluster_binding("system:volume-scheduler", [user("system:kube-scheduler")]),
        cluster_binding(INGRESS_USER, [user(INGRESS_USER)]),
        # kubeadm's bindings for joining nodes: bootstrap tokens may post CSRs that are approved
        # for node client certificates; nodes may renew their own.
        cluster_binding("system:node-bootstrapper", [group(BOOTSTRAPPERS)], name="kubeadm:kubelet-bootstrap"),
        cluster_binding(NODECLIENT, [group(BOOTSTRAPPERS)], name="kubeadm:node-autoapprove-bootstrap"),
        cluster_binding(SELFNODECLIENT, [group("system:nodes")], name="kubeadm:node-autoapprove-certificate-rotation"),
    ]
    # The controller-manager runs every controller under its own user (upstream's
    # --use-service-account-credentials=false), so each controller's role is bound to it too.
    bindings += [cluster_binding(CONTROLLER_PREFIX + name, [service_account("kube-system", name),
                                                            user("system:kube-controller-manager")])
                 for name in _CONTROLLERS]
    return bindings
