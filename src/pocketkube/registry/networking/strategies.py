"""The strategies of Ingress and IngressClass, with the DefaultIngressClass admission: an Ingress
created without spec.ingressClassName (nor the legacy class annotation) gets the default class's
name, the newest IngressClass annotated ingressclass.kubernetes.io/is-default-class: "true"."""

from __future__ import annotations

from collections.abc import Callable

from pocketkube.api.networking import ANN_INGRESS_CLASS, default_ingress_class
from pocketkube.registry.networking import validation as v
from pocketkube.registry.strategy import Hooks, Strategy, Transaction


def admit_ingress(ing: dict, classes: list[dict]) -> None:
    """DefaultIngressClass, in place."""
    spec = ing.get("spec")
    if not isinstance(spec, dict) or spec.get("ingressClassName") is not None:
        return
    annotations = (ing.get("metadata") or {}).get("annotations")
    if isinstance(annotations, dict) and annotations.get(ANN_INGRESS_CLASS):
        return
    name = default_ingress_class(classes)
    if name is not None:
        spec["ingressClassName"] = name


class IngressHooks(Hooks):
    def __init__(self) -> None:
        self.classes: Callable[[], list[dict]] = list

    def before_create(self, obj: dict) -> Transaction | None:
        admit_ingress(obj, self.classes())
        return None


def default_ingress_class_obj(obj: dict) -> None:
    """SetDefaults_IngressClass: a parameters reference without a scope is cluster-scoped."""
    params = (obj.get("spec") or {}).get("parameters") if isinstance(obj.get("spec"), dict) else None
    if isinstance(params, dict) and params.get("scope") is None:
        params["scope"] = "Cluster"


def ingress_strategy() -> Strategy:
    return Strategy(lambda obj: None, v.validate_ingress, v.validate_ingress_update, tracks_generation=True,
                    hooks=IngressHooks())


def ingress_class_strategy() -> Strategy:
    return Strategy(default_ingress_class_obj, v.validate_ingress_class, v.validate_ingress_class_update,
                    tracks_generation=True, status_via_main=True)


def connect(stores: dict) -> None:
    """Give the DefaultIngressClass admission its view of the IngressClasses."""
    hooks = stores[("networking.k8s.io", "ingresses")].hooks
    if isinstance(hooks, IngressHooks):
        hooks.classes = stores[("networking.k8s.io", "ingressclasses")].list_objects
