"""The resource table: every resource the API server serves, with its discovery facts."""

from __future__ import annotations

from dataclasses import dataclass

ALL_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


@dataclass(frozen=True)
class Resource:
    group: str
    version: str
    kind: str
    plural: str
    singular: str
    namespaced: bool = True
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()  # "status", "scale", "binding", "log"
    verbs: tuple[str, ...] = tuple(ALL_VERBS)

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def api_version(self) -> str:
        return self.group_version

    @property
    def list_kind(self) -> str:
        return self.kind + "List"

    @property
    def prefix(self) -> str:
        """URL prefix of the group-version: /api/v1 or /apis/<group>/<version>."""
        return f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"

    def qualified(self) -> str:
        """`services` or `deployments.apps`: the name used in error messages."""
        return f"{self.plural}.{self.group}" if self.group else self.plural


RESOURCES: list[Resource] = [
    Resource("", "v1", "Namespace", "namespaces", "namespace", namespaced=False,
             short_names=("ns",), subresources=("status", "finalize"),
             verbs=("create", "delete", "get", "list", "patch", "update", "watch")),
    Resource("", "v1", "Node", "nodes", "node", namespaced=False, short_names=("no",),
             subresources=("status", "proxy")),
    Resource("", "v1", "Pod", "pods", "pod", short_names=("po",), categories=("all",),
             subresources=("status", "binding", "log", "eviction", "exec", "attach", "portforward")),
    Resource("", "v1", "Service", "services", "service", short_names=("svc",), categories=("all",),
             subresources=("status",),
             verbs=("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")),
    Resource("", "v1", "Endpoints", "endpoints", "endpoints", short_names=("ep",)),
    Resource("", "v1", "Event", "events", "event", short_names=("ev",)),
    # -- config and identity (issue 10)
    Resource("", "v1", "ConfigMap", "configmaps", "configmap", short_names=("cm",)),
    Resource("", "v1", "Secret", "secrets", "secret"),
    Resource("", "v1", "ServiceAccount", "serviceaccounts", "serviceaccount", short_names=("sa",),
             subresources=("token",)),

    # -- storage (issue 10)
    Resource("", "v1", "PersistentVolume", "persistentvolumes", "persistentvolume", namespaced=False,
             short_names=("pv",), subresources=("status",)),
    Resource("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", "persistentvolumeclaim",
             short_names=("pvc",), subresources=("status",)),

    # -- resources (issue 10)
    Resource("", "v1", "LimitRange", "limitranges", "limitrange", short_names=("limits",)),
    Resource("", "v1", "ResourceQuota", "resourcequotas", "resourcequota", short_names=("quota",),
             subresources=("status",)),

    # -- workloads (issue 10)
    Resource("", "v1", "ReplicationController", "replicationcontrollers", "replicationcontroller",
             short_names=("rc",), categories=("all",), subresources=("status", "scale")),

    Resource("apps", "v1", "Deployment", "deployments", "deployment", short_names=("deploy",),
             categories=("all",), subresources=("status", "scale")),
    Resource("apps", "v1", "ReplicaSet", "replicasets", "replicaset", short_names=("rs",),
             categories=("all",), subresources=("status", "scale")),
    Resource("apps", "v1", "DaemonSet", "daemonsets", "daemonset", short_names=("ds",),
             categories=("all",), subresources=("status",)),
    Resource("apps", "v1", "StatefulSet", "statefulsets", "statefulset", short_names=("sts",),
             categories=("all",), subresources=("status", "scale")),
    Resource("apps", "v1", "ControllerRevision", "controllerrevisions", "controllerrevision"),

    Resource("batch", "v1", "Job", "jobs", "job", categories=("all",), subresources=("status",)),
    Resource("batch", "v1", "CronJob", "cronjobs", "cronjob", short_names=("cj",), categories=("all",),
             subresources=("status",)),

    Resource("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", "poddisruptionbudget",
             short_names=("pdb",), subresources=("status",)),

    Resource("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings",
             "clusterrolebinding", namespaced=False),
    Resource("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", "clusterrole",
             namespaced=False),
    Resource("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", "rolebinding"),
    Resource("rbac.authorization.k8s.io", "v1", "Role", "roles", "role"),

    Resource("storage.k8s.io", "v1", "StorageClass", "storageclasses", "storageclass", namespaced=False,
             short_names=("sc",)),

    # -- networking (issue 11): served by the built-in controller in pocketkube/ingress
    Resource("networking.k8s.io", "v1", "Ingress", "ingresses", "ingress", short_names=("ing",),
             subresources=("status",)),
    Resource("networking.k8s.io", "v1", "IngressClass", "ingressclasses", "ingressclass", namespaced=False),

    Resource("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", "endpointslice"),
    Resource("coordination.k8s.io", "v1", "Lease", "leases", "lease"),

    # -- TLS bootstrap (issue 13): node client certificates through CSRs
    Resource("certificates.k8s.io", "v1", "CertificateSigningRequest", "certificatesigningrequests",
             "certificatesigningrequest", namespaced=False, short_names=("csr",),
             subresources=("status", "approval")),

    # -- API registration (issue 10): the APIServices of the kube-aggregator
    Resource("apiregistration.k8s.io", "v1", "APIService", "apiservices", "apiservice", namespaced=False,
             categories=("api-extensions",), subresources=("status",)),
]

BY_PLURAL: dict[tuple[str, str], Resource] = {(r.group, r.plural): r for r in RESOURCES}
BY_KIND: dict[tuple[str, str], Resource] = {(r.group_version, r.kind): r for r in RESOURCES}


def lookup(group: str, version: str, plural: str) -> Resource | None:
    r = BY_PLURAL.get((group, plural))
    return r if r is not None and r.version == version else None


def group_versions() -> list[tuple[str, str]]:
    """(group, version) pairs in discovery order, core first."""
    seen: dict[tuple[str, str], None] = {}
    for r in RESOURCES:
        seen[(r.group, r.version)] = None
    return list(seen)


