"""The `default` ServiceAccount of every namespace and the `kube-root-ca.crt` ConfigMap (mirrors
pkg/controller/serviceaccount's ServiceAccountsController and pkg/controller/certificates/
rootcacertpublisher).

Both are keyed by namespace: a new or changed namespace, or a deleted ServiceAccount or a
changed/deleted root-CA ConfigMap, queues its namespace; `sync` then creates what is missing
(and puts the CA bundle back if someone edited it). Terminating namespaces are left alone, as
upstream does, so their deletion is not undone. The decisions are pure functions; `sync` writes.
"""

from __future__ import annotations

import logging

from pocketkube.api import errors
from pocketkube.api.resources import BY_PLURAL
from pocketkube.client.interface import Client
from pocketkube.controllers.base import Controller, SharedInformers

__all__ = ["DEFAULT_SERVICE_ACCOUNT", "ROOT_CA_CONFIGMAP", "RootCACertPublisher", "ServiceAccountsController",
           "missing_service_accounts", "root_ca_change"]

log = logging.getLogger(__name__)

NAMESPACES = BY_PLURAL[("", "namespaces")]
SERVICEACCOUNTS = BY_PLURAL[("", "serviceaccounts")]
CONFIGMAPS = BY_PLURAL[("", "configmaps")]
DEFAULT_SERVICE_ACCOUNT = "default"
ROOT_CA_CONFIGMAP = "kube-root-ca.crt"
ROOT_CA_KEY = "ca.crt"
DESCRIPTION_ANNOTATION = "kubernetes.io/description"
DESCRIPTION = ("Contains a CA bundle that can be used to verify the kube-apiserver when using internal "
               "endpoints such as the internal service IP or kubernetes.default.svc. No other usage is "
               "guaranteed across distributions of Kubernetes clusters.")


def _active(ns: dict | None) -> bool:
    return ns is not None and not ns["metadata"].get("deletionTimestamp") \
        and (ns.get("status") or {}).get("phase") != "Terminating"


def missing_service_accounts(ns: dict | None, existing: set[str],
                             wanted: tuple[str, ...] = (DEFAULT_SERVICE_ACCOUNT,)) -> list[dict]:
    """The ServiceAccounts to create in a namespace: the wanted ones it lacks, unless it is going."""
    if not _active(ns):
        return []
    return [{"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}}
            for name in wanted if name not in existing]


def root_ca_change(ns: dict | None, cm: dict | None, ca: str) -> tuple[str, dict] | None:
    """("create", body) or ("update", body) to make the namespace's root-CA ConfigMap hold `ca`;
    None when it is right already or the namespace is going."""
    if not _active(ns) or not ca:
        return None
    if cm is None:
        return "create", {"apiVersion": "v1", "kind": "ConfigMap",
                          "metadata": {"name": ROOT_CA_CONFIGMAP,
                                       "annotations": {DESCRIPTION_ANNOTATION: DESCRIPTION}},
                          "data": {ROOT_CA_KEY: ca}}
    annotations = cm["metadata"].get("annotations") or {}
    if cm.get("data") == {ROOT_CA_KEY: ca} and annotations.get(DESCRIPTION_ANNOTATION) == DESCRIPTION:
        return None
    meta = {**cm["metadata"], "annotations": {**annotations, DESCRIPTION_ANNOTATION: DESCRIPTION}}
    return "update", {**cm, "metadata": meta, "data": {ROOT_CA_KEY: ca}}


class _PerNamespace(Controller):
    """Queues namespaces: on a namespace add/update, and on events of the namespaced objects it keeps."""

    def __init__(self, client: Client, informers: SharedInformers, watched, *, workers: int) -> None:
        self.client = client
        self.namespaces = informers.get(NAMESPACES)
        self.watched = watched
        super().__init__([self.namespaces, watched], workers=workers)
        self.namespaces.add_handlers(on_add=self._queue_ns, on_update=lambda old, new: self._queue_ns(new))
        watched.add_handlers(on_update=lambda old, new: self._queue_owner(new), on_delete=self._queue_owner)

    def _queue_ns(self, ns: dict) -> None:
        self.queue.add(ns["metadata"]["name"])

    def _queue_owner(self, obj: dict) -> None:
        self.queue.add(obj["metadata"].get("namespace", ""))


class ServiceAccountsController(_PerNamespace):
    name = "serviceaccount-controller"

    def __init__(self, client: Client, informers: SharedInformers, *, workers: int = 1) -> None:
        super().__init__(client, informers, informers.get(SERVICEACCOUNTS), workers=workers)

    async def sync(self, key: str) -> None:
        existing = {name for name in (DEFAULT_SERVICE_ACCOUNT,) if self.watched.get(f"{key}/{name}") is not None}
        for body in missing_service_accounts(self.namespaces.get(key), existing):
            try:
                await self.client.create(SERVICEACCOUNTS, body, key)
            except errors.AlreadyExists:
                pass  # the cache was behind
            except errors.Forbidden:
                log.debug("%s: namespace %s is terminating", self.name, key)


class RootCACertPublisher(_PerNamespace):
    name = "root-ca-cert-publisher"

    def __init__(self, client: Client, informers: SharedInformers, ca: str, *, workers: int = 1) -> None:
        self.ca = ca
        cms = informers.get(CONFIGMAPS, field_selector=f"metadata.name={ROOT_CA_CONFIGMAP}")
        super().__init__(client, informers, cms, workers=workers)

    async def sync(self, key: str) -> None:
        change = root_ca_change(self.namespaces.get(key), self.watched.get(f"{key}/{ROOT_CA_CONFIGMAP}"), self.ca)
        if change is None:
            return
        verb, body = change
        try:
            if verb == "create":
                await self.client.create(CONFIGMAPS, body, key)
            else:
                await self.client.update(CONFIGMAPS, body)
        except errors.AlreadyExists:
            self.queue.add_rate_limited(key)  # the cache was behind: look again
        except (errors.Forbidden, errors.NotFound):
            log.debug("%s: namespace %s is terminating", self.name, key)
