"""Objects every cluster has from the start: system namespaces, the `kubernetes` Service, the
`standard` default StorageClass and the `pocketkube` default IngressClass."""

from __future__ import annotations

import ipaddress

from pocketkube.api import errors
from pocketkube.api.networking import ANN_DEFAULT_INGRESS_CLASS, INGRESS_CLASS_NAME, INGRESS_CONTROLLER
from pocketkube.registry.registry import Registry

SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
# The built-in local-path provisioner (controllers/provisioner.py), as kind's and k3s' `standard`
# / `local-path` classes: a directory on the node that first uses the claim.
LOCAL_PATH_PROVISIONER = "pocketkube.io/local-path"
DEFAULT_STORAGE_CLASS = {
    "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
    "metadata": {"name": "standard", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
    "provisioner": LOCAL_PATH_PROVISIONER, "reclaimPolicy": "Delete",
    "volumeBindingMode": "WaitForFirstConsumer", "allowVolumeExpansion": False,
}

# The built-in Ingress controller's class (pocketkube/ingress), default as k3s marks traefik's.
DEFAULT_INGRESS_CLASS = {
    "apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
    "metadata": {"name": INGRESS_CLASS_NAME, "annotations": {ANN_DEFAULT_INGRESS_CLASS: "true"}},
    "spec": {"controller": INGRESS_CONTROLLER},
}


async def _ensure(store, obj: dict, namespace: str = "") -> None:
    # Look first: create allocates before its existence check, so re-creating the `kubernetes`
    # Service at a restart would fail with "provided IP is already allocated".
    if store.try_get(namespace, obj["metadata"]["name"]) is not None:
        return
    try:
        await store.create(obj, namespace)
    except errors.AlreadyExists:
        pass


def endpoint_address(bind_address: str, advertise_address: str = "") -> str:
    """The address in the `kubernetes` endpoints: the advertised one (reachable from pods), else
    the bind address when it is one IP, else loopback (the process runtime's pods share the host's)."""
    if advertise_address:
        return advertise_address
    if _is_ip(bind_address) and not ipaddress.ip_address(bind_address).is_unspecified:
        return bind_address
    return "127.0.0.1"


async def bootstrap(registry: Registry, host: str, port: int, advertise_address: str = "",
                    addresses: list[str] | None = None) -> None:
    """`addresses`: the live API servers' (master leases); default: this server's endpoint address."""
    for ns in SYSTEM_NAMESPACES:
        await _ensure(registry.namespaces, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    await _ensure(registry.store("storage.k8s.io", "storageclasses"), DEFAULT_STORAGE_CLASS)
    await _ensure(registry.store("networking.k8s.io", "ingressclasses"), DEFAULT_INGRESS_CLASS)
    first_ip = registry.allocator.first_ip()
    await _ensure(registry.services, {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kubernetes", "namespace": "default",
                     "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {"type": "ClusterIP", "clusterIP": str(first_ip), "sessionAffinity": "None",
                 "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}]},
    }, "default")
    ips = sorted(set(addresses or [endpoint_address(host, advertise_address)]), key=_ip_order)
    await _upsert(registry.store("", "endpoints"), {
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": "kubernetes", "namespace": "default",
                     "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
        "subsets": [{"addresses": [{"ip": ip} for ip in ips],
                     "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}],
    })
    await _upsert(registry.store("discovery.k8s.io", "endpointslices"), {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "kubernetes", "namespace": "default",
                     "labels": {"kubernetes.io/service-name": "kubernetes"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [ip], "conditions": {"ready": True}} for ip in ips],
        "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
    })


async def _upsert(store, obj: dict) -> None:
    """Keep the API server's own endpoints current (its port can change between starts)."""
    current = store.try_get("default", obj["metadata"]["name"])
    if current is None:
        await _ensure(store, obj, "default")
        return
    desired = {k: v for k, v in obj.items() if k not in ("metadata",)}
    if any(current.get(k) != v for k, v in desired.items() if k not in ("apiVersion", "kind")):
        current.update({k: v for k, v in desired.items()})
        await store.update("default", obj["metadata"]["name"], current)


def _ip_order(ip: str) -> tuple:
    try:
        a = ipaddress.ip_address(ip)
        return (a.version, int(a))
    except ValueError:
        return (9, 0)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False
