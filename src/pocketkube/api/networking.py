"""networking.k8s.io vocabulary shared by the registry and the Ingress controller: the default
IngressClass annotation, the built-in class, and how an Ingress names its class."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

ANN_DEFAULT_INGRESS_CLASS = "ingressclass.kubernetes.io/is-default-class"
# The legacy annotation still honoured by controllers when spec.ingressClassName is unset.
ANN_INGRESS_CLASS = "kubernetes.io/ingress.class"
# The built-in controller (pocketkube/ingress), as k3s ships traefik: class `pocketkube`, default.
INGRESS_CONTROLLER = "pocketkube.io/ingress"
INGRESS_CLASS_NAME = "pocketkube"
PATH_TYPES = ("Exact", "ImplementationSpecific", "Prefix")


def _map(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def is_default_ingress_class(ic: dict) -> bool:
    return _map(_map(ic.get("metadata")).get("annotations")).get(ANN_DEFAULT_INGRESS_CLASS) == "true"


def default_ingress_class(classes: Iterable[dict]) -> str | None:
    """The class the DefaultIngressClass admission gives: the newest marked default (ties: by name)."""
    defaults = [c for c in classes if is_default_ingress_class(c)]
    if not defaults:
        return None
    newest = max(defaults, key=lambda c: (str(_map(c.get("metadata")).get("creationTimestamp") or ""),
                                          str(_map(c.get("metadata")).get("name") or "")))
    return newest["metadata"]["name"]


def ingress_class_of(ing: dict) -> str | None:
    """spec.ingressClassName, else the legacy kubernetes.io/ingress.class annotation."""
    name = _map(ing.get("spec")).get("ingressClassName")
    if isinstance(name, str) and name:
        return name
    ann = _map(_map(ing.get("metadata")).get("annotations")).get(ANN_INGRESS_CLASS)
    return ann if isinstance(ann, str) and ann else None
