"""The ServiceAccount admission plugin at pod create (upstream's
plugin/pkg/admission/serviceaccount): the pod runs as an existing service account, and unless
the pod or that account opts out (automountServiceAccountToken: false) every container and init
container mounts a `kube-api-access-<5 random>` projected volume — a bound token, the cluster CA
and the namespace — read-only at /var/run/secrets/kubernetes.io/serviceaccount. A pod without
imagePullSecrets takes its service account's.

One deliberate difference: while a namespace's `default` account does not exist yet (its
controller creates it just after the namespace), a pod naming it is admitted as if it existed
with no settings, where upstream retries for a moment and then refuses the pod; the kubelet's
token request for the volume then waits until the account exists. A pod naming any other
missing account is refused, as upstream.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from pocketkube.api import errors

DEFAULT_SERVICE_ACCOUNT = "default"
VOLUME_PREFIX = "kube-api-access-"
MOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
ROOT_CA_CONFIGMAP = "kube-root-ca.crt"
TOKEN_EXPIRATION_SECONDS = 3607  # WarnOnlyBoundTokenExpirationSeconds: the server extends these
MIRROR_POD_ANNOTATION = "kubernetes.io/config.mirror"
_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # SimpleNameGenerator's

# (namespace, name) → the ServiceAccount, or None when there is none
ServiceAccountLookup = Callable[[str, str], "dict | None"]


def token_volume_source() -> dict:
    """The projected source of the token volume, as upstream's TokenVolumeSource writes it."""
    return {"defaultMode": 0o644, "sources": [
        {"serviceAccountToken": {"expirationSeconds": TOKEN_EXPIRATION_SECONDS, "path": "token"}},
        {"configMap": {"name": ROOT_CA_CONFIGMAP, "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace",
                                    "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
    ]}


def should_automount(sa: dict | None, spec: dict) -> bool:
    """The pod's automountServiceAccountToken wins over its service account's; both unset: mount."""
    pod_says = spec.get("automountServiceAccountToken")
    if isinstance(pod_says, bool):
        return pod_says
    sa_says = (sa or {}).get("automountServiceAccountToken")
    return sa_says if isinstance(sa_says, bool) else True


def _containers(spec: dict) -> list[dict]:
    return [c for key in ("initContainers", "containers") for c in (spec.get(key) or []) if isinstance(c, dict)]


def mount_token(spec: dict, generated_name: Callable[[], str]) -> None:
    """Add the token volume and its mount, as upstream's mountServiceAccountToken: an existing
    kube-api-access-* volume is reused, and a container that already mounts something at the
    path is left alone (the volume is added only if some container mounts it)."""
    volumes = spec.get("volumes") if isinstance(spec.get("volumes"), list) else []
    existing = next((v["name"] for v in volumes if isinstance(v, dict) and isinstance(v.get("name"), str)
                     and v["name"].startswith(VOLUME_PREFIX)), "")
    name = existing or generated_name()
    needed = False
    for c in _containers(spec):
        mounts = c.get("volumeMounts") if isinstance(c.get("volumeMounts"), list) else []
        if any(isinstance(m, dict) and m.get("mountPath") == MOUNT_PATH for m in mounts):
            continue
        c["volumeMounts"] = [*mounts, {"name": name, "readOnly": True, "mountPath": MOUNT_PATH}]
        needed = True
    if needed and not existing:
        spec["volumes"] = [*volumes, {"name": name, "projected": token_volume_source()}]


def volume_name() -> str:
    return VOLUME_PREFIX + "".join(random.choice(_NAME_ALPHABET) for _ in range(5))


def admit(pod: dict, lookup: ServiceAccountLookup, requested_name: str = "") -> None:
    """Mutate a pod being created; Forbidden when its service account does not exist.
    `requested_name` is the name the client sent (empty for generateName), for the message."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec")
    if not isinstance(spec, dict) or MIRROR_POD_ANNOTATION in (meta.get("annotations") or {}):
        return
    namespace = meta.get("namespace", "")
    name = spec.get("serviceAccountName") or spec.get("serviceAccount") or DEFAULT_SERVICE_ACCOUNT
    if not isinstance(name, str):
        return  # validation reports it
    spec["serviceAccountName"] = spec["serviceAccount"] = name
    sa = lookup(namespace, name)
    if sa is None and name != DEFAULT_SERVICE_ACCOUNT:
        what = f'pods "{requested_name}"' if requested_name else "pods"
        raise errors.Forbidden(f'{what} is forbidden: error looking up service account {namespace}/{name}: '
                               f'serviceaccount "{name}" not found', {"name": requested_name, "kind": "pods"})
    if should_automount(sa, spec):
        mount_token(spec, volume_name)
    pull = (sa or {}).get("imagePullSecrets")
    if not spec.get("imagePullSecrets") and isinstance(pull, list) and pull:
        spec["imagePullSecrets"] = [{"name": p.get("name", "")} for p in pull if isinstance(p, dict)]
