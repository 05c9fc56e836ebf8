"""Pod defaulting, as Kubernetes' pkg/apis/core/v1 defaults it.

Defaults reproduce what a real cluster shows in `kubectl get pod -o yaml`: the static v1 defaults
plus what the ServiceAccount, Priority and DefaultTolerationSeconds admission plugins add.
`default_pod_spec` is shared with pod templates (Deployments, ReplicaSets).
"""

from __future__ import annotations

from typing import Any

from pocketkube.api.quantity import parse as parse_quantity

DEFAULT_TOLERATION_SECONDS = 300


def default(obj: dict, toleration_seconds: int = DEFAULT_TOLERATION_SECONDS) -> None:
    """Static v1 defaults plus the create-time admission defaults a real cluster shows.

    `toleration_seconds` is the DefaultTolerationSeconds plugin's setting (the server's
    --pod-eviction-timeout), given to the pod strategy at construction."""
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return
    default_pod_spec(spec)
    for container in _containers(spec):
        _default_requests_to_limits(container)
    spec.setdefault("enableServiceLinks", True)
    if not spec.get("serviceAccountName"):
        # The deprecated `serviceAccount` wins when the new field is empty, then admission's "default".
        spec["serviceAccountName"] = spec.get("serviceAccount") or "default"
    spec["serviceAccount"] = spec["serviceAccountName"]
    if not spec.get("priorityClassName"):
        spec.setdefault("priority", 0)
    spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
    _default_tolerations(spec, toleration_seconds)
    if obj.get("status") is None:
        obj["status"] = {"phase": "Pending", "qosClass": qos_class(spec)}


def default_pod_spec(spec: dict) -> None:
    """SetDefaults_PodSpec and the container/probe/port defaults: shared with pod templates."""
    for key, value in (("restartPolicy", "Always"), ("dnsPolicy", "ClusterFirst"),
                       ("schedulerName", "default-scheduler"), ("terminationGracePeriodSeconds", 30)):
        if spec.get(key) in (None, ""):
            spec[key] = value
    if spec.get("securityContext") is None:
        spec["securityContext"] = {}
    for container in _containers(spec):
        _default_container(container)
    volumes = spec.get("volumes")
    if isinstance(volumes, list):
        for volume in volumes:
            if isinstance(volume, dict):
                _default_volume(volume)


def _containers(spec: dict) -> list[dict]:
    out = []
    for key in ("initContainers", "containers"):
        items = spec.get(key)
        if isinstance(items, list):
            out.extend(c for c in items if isinstance(c, dict))
    return out


def image_tag(image: str) -> str:
    """The tag ParseImageName reports: "latest" when neither tag nor digest is given."""
    if "@" in image:
        name = image.split("@", 1)[0]
        last = name.rsplit("/", 1)[-1]
        return last.split(":", 1)[1] if ":" in last else ""
    last = image.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else "latest"


def _default_container(c: dict) -> None:
    if not c.get("imagePullPolicy"):
        image = c.get("image") if isinstance(c.get("image"), str) else ""
        c["imagePullPolicy"] = "Always" if image_tag(image) == "latest" else "IfNotPresent"
    if not c.get("terminationMessagePath"):
        c["terminationMessagePath"] = "/dev/termination-log"
    if not c.get("terminationMessagePolicy"):
        c["terminationMessagePolicy"] = "File"
    if c.get("resources") is None:
        c["resources"] = {}
    ports = c.get("ports")
    if isinstance(ports, list):
        for port in ports:
            if isinstance(port, dict) and not port.get("protocol"):
                port["protocol"] = "TCP"
    for probe_key in ("livenessProbe", "readinessProbe", "startupProbe"):
        if isinstance(c.get(probe_key), dict):
            _default_probe(c[probe_key])
    env = c.get("env")
    if isinstance(env, list):
        for var in env:
            field_ref = var.get("valueFrom", {}).get("fieldRef") if isinstance(var, dict) and isinstance(
                var.get("valueFrom"), dict) else None
            if isinstance(field_ref, dict):
                field_ref.setdefault("apiVersion", "v1")


def _default_probe(probe: dict) -> None:
    for key, value in (("timeoutSeconds", 1), ("periodSeconds", 10), ("successThreshold", 1),
                       ("failureThreshold", 3)):
        if not probe.get(key):
            probe[key] = value
    http_get = probe.get("httpGet")
    if isinstance(http_get, dict):
        if not http_get.get("path"):
            http_get["path"] = "/"
        if not http_get.get("scheme"):
            http_get["scheme"] = "HTTP"


def _default_volume(volume: dict) -> None:
    sources = [k for k in volume if k != "name"]
    if not sources:
        volume["emptyDir"] = {}
    for key in ("configMap", "secret", "downwardAPI", "projected"):
        if isinstance(volume.get(key), dict):
            volume[key].setdefault("defaultMode", 420)


def _default_requests_to_limits(c: dict) -> None:
    resources = c.get("resources")
    if not isinstance(resources, dict) or not isinstance(resources.get("limits"), dict) or not resources["limits"]:
        return
    requests = resources.setdefault("requests", {})
    if isinstance(requests, dict):
        for name, quantity in resources["limits"].items():
            requests.setdefault(name, quantity)


def _tolerates(toleration: Any, key: str) -> bool:
    """Whether a toleration already tolerates the NoExecute taint `key` (ToleratesTaint)."""
    if not isinstance(toleration, dict):
        return False
    if toleration.get("effect") not in (None, "", "NoExecute"):
        return False
    if toleration.get("key") not in (None, "", key):
        return False
    if not toleration.get("key"):
        return toleration.get("operator") == "Exists"
    return toleration.get("operator") == "Exists" or (toleration.get("operator") in (None, "", "Equal")
                                                       and not toleration.get("value"))


def _default_tolerations(spec: dict, seconds: int) -> None:
    """What the DefaultTolerationSeconds admission plugin adds."""
    tolerations = spec.get("tolerations")
    if tolerations is None:
        tolerations = []
    if not isinstance(tolerations, list):
        return
    for key in ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"):
        if not any(_tolerates(t, key) for t in tolerations):
            tolerations.append({"key": key, "operator": "Exists", "effect": "NoExecute",
                                "tolerationSeconds": seconds})
    spec["tolerations"] = tolerations


def qos_class(spec: dict) -> str:
    """Guaranteed, Burstable or BestEffort, from the containers' cpu/memory requests and limits."""
    any_set, guaranteed = False, True
    for c in _containers(spec):
        resources = c.get("resources") if isinstance(c.get("resources"), dict) else {}
        requests = resources.get("requests") if isinstance(resources.get("requests"), dict) else {}
        limits = resources.get("limits") if isinstance(resources.get("limits"), dict) else {}
        for name in ("cpu", "memory"):
            if name in requests or name in limits:
                any_set = True
            if name not in limits or parse_quantity(requests.get(name, limits[name])) != parse_quantity(limits[name]):
                guaranteed = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"
