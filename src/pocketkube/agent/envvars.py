"""A container's environment as the kubelet computes it: Kubernetes semantics, not a runtime's.

Service link variables, then the container's `env` in order (each value `$(VAR)`-expanded
against what came before it, fieldRef and resourceFieldRef resolved), then what every container
runtime adds (HOSTNAME, PATH) and POD_IP. The same `$(VAR)` expansion applies to command and
args. Every runtime receives the finished environment and argv in its ContainerConfig, so none
of this depends on how containers are run.
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Callable
from fractions import Fraction

from pocketkube.agent.runtime.interface import DEFAULT_PATH
from pocketkube.api.quantity import parse


class EnvError(Exception):
    """An env var cannot be computed; the container waits with CreateContainerConfigError."""


def expand(text: str, lookup: Callable[[str], str | None]) -> str:
    """Kubernetes' $(VAR) expansion: `$$` is a literal `$`, unknown or unclosed references stay as is."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch != "$" or i + 1 >= n:
            out.append(ch)
            i += 1
            continue
        nxt = text[i + 1]
        if nxt == "$":
            out.append("$")
            i += 2
        elif nxt == "(":
            close = text.find(")", i + 2)
            if close < 0:
                out.append("$(")
                i += 2
                continue
            name = text[i + 2:close]
            value = lookup(name)
            out.append(value if value is not None else f"$({name})")
            i = close + 1
        else:
            out.append("$" + nxt)
            i += 2
    return "".join(out)


def _service_ip_set(svc: dict) -> bool:
    ip = (svc.get("spec") or {}).get("clusterIP")
    return bool(ip) and ip != "None"


def services_for_pod(pod: dict, services: list[dict]) -> list[dict]:
    """The Services whose link variables a pod gets: its namespace's (when enableServiceLinks), plus
    default/kubernetes unless the namespace has its own `kubernetes` Service."""
    ns = pod["metadata"].get("namespace", "default")
    links = (pod.get("spec") or {}).get("enableServiceLinks", True) is not False
    chosen: dict[str, dict] = {}
    master: dict | None = None
    for svc in services:
        if not _service_ip_set(svc):
            continue
        m = svc["metadata"]
        if m.get("namespace") == "default" and m.get("name") == "kubernetes":
            master = svc
        if links and m.get("namespace") == ns:
            chosen[m["name"]] = svc
    if master is not None and "kubernetes" not in chosen:
        chosen["kubernetes"] = master
    return [chosen[k] for k in sorted(chosen)]


def service_env(services: list[dict]) -> dict[str, str]:
    """The Docker-link style variables (FOO_SERVICE_HOST, FOO_PORT_80_TCP_ADDR, ...) per Service."""
    env: dict[str, str] = {}
    for svc in services:
        prefix = svc["metadata"]["name"].upper().replace("-", "_")
        ip = svc["spec"]["clusterIP"]
        host = f"[{ip}]" if ":" in ip else ip
        ports = svc["spec"].get("ports") or []
        env[f"{prefix}_SERVICE_HOST"] = ip
        for i, p in enumerate(ports):
            port, proto = str(p.get("port")), (p.get("protocol") or "TCP")
            if i == 0:
                env[f"{prefix}_SERVICE_PORT"] = port
                env[f"{prefix}_PORT"] = f"{proto.lower()}://{host}:{port}"
            if p.get("name"):
                env[f"{prefix}_SERVICE_PORT_{p['name'].upper().replace('-', '_')}"] = port
            link = f"{prefix}_PORT_{port}_{proto.upper()}"
            env[link] = f"{proto.lower()}://{host}:{port}"
            env[f"{link}_PROTO"] = proto.lower()
            env[f"{link}_PORT"] = port
            env[f"{link}_ADDR"] = ip
    return env


_SUBSCRIPT = re.compile(r"^(metadata\.(?:labels|annotations))\['(.*)'\]$")


def field_ref(pod: dict, path: str, pod_ip: str, host_ip: str) -> str:
    meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    m = _SUBSCRIPT.match(path)
    if m:
        section = meta.get(m.group(1).split(".")[1]) or {}
        return str(section.get(m.group(2), ""))
    simple = {
        "metadata.name": meta.get("name", ""), "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""), "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.podIP": pod_ip, "status.podIPs": pod_ip, "status.hostIP": host_ip, "status.hostIPs": host_ip,
    }
    if path in simple:
        return simple[path]
    if path in ("metadata.labels", "metadata.annotations"):
        items = meta.get(path.split(".")[1]) or {}
        return "\n".join(f'{k}="{v}"' for k, v in sorted(items.items()))
    raise EnvError(f"unsupported fieldRef fieldPath: {path}")


def quantity(value: str | float) -> Fraction:
    number = parse(value)
    if number is None:
        raise EnvError(f"invalid quantity {value!r}")
    return number


def resource_field_ref(container: dict, ref: dict, allocatable: dict[str, str]) -> str:
    """limits.cpu, requests.memory, ... rounded up in units of `divisor`; unset limits are the node's."""
    resource = ref.get("resource", "")
    kind, _, name = resource.partition(".")
    resources = container.get("resources") or {}
    value = (resources.get(kind) or {}).get(name)
    if value is None and kind == "limits":
        value = allocatable.get(name)
    amount = quantity(value) if value is not None else Fraction(0)
    divisor = quantity(ref.get("divisor") or "1")
    return str(math.ceil(amount / divisor)) if divisor else "0"


# (kind, name) → the object, or None when it does not exist. The kubelet fetches what
# `references` names before computing a container's environment, so this module stays pure.
ObjectLookup = Callable[[str, str], dict | None]
CONFIGMAP, SECRET = "ConfigMap", "Secret"
_ENV_VAR_NAME = re.compile(r"[-._a-zA-Z][-._a-zA-Z0-9]*")


def references(container: dict) -> set[tuple[str, str]]:
    """The ConfigMaps and Secrets a container's env and envFrom read, as (kind, name)."""
    refs: set[tuple[str, str]] = set()
    for src in container.get("envFrom") or []:
        if isinstance(src, dict):
            for key, kind in (("configMapRef", CONFIGMAP), ("secretRef", SECRET)):
                if isinstance(src.get(key), dict):
                    refs.add((kind, src[key].get("name", "")))
    for var in container.get("env") or []:
        source = var.get("valueFrom") if isinstance(var, dict) else None
        if isinstance(source, dict):
            for key, kind in (("configMapKeyRef", CONFIGMAP), ("secretKeyRef", SECRET)):
                if isinstance(source.get(key), dict):
                    refs.add((kind, source[key].get("name", "")))
    return refs


def _values(obj: dict, kind: str) -> dict[str, str]:
    """What env sees of an object: a ConfigMap's `data`, a Secret's decoded `data`."""
    data = obj.get("data") or {}
    if kind == CONFIGMAP:
        return {k: v for k, v in data.items() if isinstance(v, str)}
    return {k: base64.b64decode(v).decode("utf-8", errors="replace") for k, v in data.items()}


def _not_found(kind: str, name: str) -> EnvError:
    # The kubelet's object cache words it with the singular resource: `configmap "x" not found`.
    return EnvError(f'{kind.lower()} "{name}" not found')


def container_env(pod: dict, container: dict, services: list[dict], pod_ip: str, host_ip: str,
                  allocatable: dict[str, str] | None = None, objects: ObjectLookup | None = None,
                  warnings: list[tuple[str, str]] | None = None) -> dict[str, str]:
    """Service link variables, then envFrom, then the container's env in order, each value
    expanded against what came before it; finally what a container runtime adds (HOSTNAME,
    PATH, HOME) and POD_IP. `warnings` collects (reason, message) Events for the pod."""
    lookup = objects or (lambda kind, name: None)
    namespace = pod["metadata"].get("namespace", "")
    env = service_env(services_for_pod(pod, services))
    for src in container.get("envFrom") or []:
        env.update(_env_from(src, namespace, lookup, warnings))
    for var in container.get("env") or []:
        name = var.get("name", "")
        if "valueFrom" in var:
            value = _value_from(pod, container, var["valueFrom"], pod_ip, host_ip, allocatable or {}, lookup)
            if value is None:
                continue
        else:
            value = expand(var.get("value", ""), env.get)
        env[name] = value
    env.setdefault("HOSTNAME", pod["metadata"].get("name", ""))
    env.setdefault("PATH", DEFAULT_PATH)
    env.setdefault("POD_IP", pod_ip)
    return env


def _env_from(src: dict, namespace: str, lookup: ObjectLookup,
              warnings: list[tuple[str, str]] | None) -> dict[str, str]:
    """One envFrom source: its keys (prefixed); keys that are no env var names are skipped with
    upstream's InvalidEnvironmentVariableNames Event."""
    kind = CONFIGMAP if "configMapRef" in src else SECRET
    ref = src.get("configMapRef") or src.get("secretRef") or {}
    name = ref.get("name", "")
    obj = lookup(kind, name)
    if obj is None:
        if ref.get("optional"):
            return {}
        raise _not_found(kind, name)
    prefix = src.get("prefix") or ""
    out: dict[str, str] = {}
    invalid: list[str] = []
    for key, value in _values(obj, kind).items():
        key = prefix + key
        if not _ENV_VAR_NAME.fullmatch(key) or key in (".", "..") or key.startswith(".."):  # IsEnvVarName
            invalid.append(key)
            continue
        out[key] = value
    if invalid and warnings is not None:
        what = "configMap" if kind == CONFIGMAP else "secret"
        warnings.append(("InvalidEnvironmentVariableNames",
                         f"Keys [{', '.join(sorted(invalid))}] from the EnvFrom {what} {namespace}/{name} "
                         "were skipped since they are considered invalid environment variable names."))
    return out


def _value_from(pod: dict, container: dict, source: dict, pod_ip: str, host_ip: str,
                allocatable: dict[str, str], lookup: ObjectLookup) -> str | None:
    if "fieldRef" in source:
        return field_ref(pod, source["fieldRef"].get("fieldPath", ""), pod_ip, host_ip)
    if "resourceFieldRef" in source:
        return resource_field_ref(container, source["resourceFieldRef"], allocatable)
    kind = CONFIGMAP if "configMapKeyRef" in source else SECRET
    ref = source.get("configMapKeyRef") or source.get("secretKeyRef") or {}
    name, key, optional = ref.get("name", ""), ref.get("key", ""), bool(ref.get("optional"))
    obj = lookup(kind, name)
    if obj is None:
        if optional:
            return None
        raise _not_found(kind, name)
    values = _values(obj, kind)
    if key not in values:
        if optional:
            return None
        raise EnvError(f"couldn't find key {key} in {kind} {pod['metadata'].get('namespace', '')}/{name}")
    return values[key]


def expand_argv(argv: list[str], env: dict[str, str]) -> list[str]:
    return [expand(a, env.get) for a in argv]


