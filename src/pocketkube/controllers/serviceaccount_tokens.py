"""The tokens controller: long-lived tokens of `kubernetes.io/service-account-token` Secrets
(mirrors pkg/controller/serviceaccount/tokens_controller.go).

A Secret of that type names its ServiceAccount in the `kubernetes.io/service-account.name`
annotation. The controller fills it in: `data.token` (a legacy JWT the wiring mints with the
service-account signing key), `data["ca.crt"]` (the cluster CA) and `data.namespace`, and records
the account's uid in `kubernetes.io/service-account.uid`. A Secret whose account does not exist
(or has another uid) is deleted, and so are an account's token Secrets when it is deleted — the
token would no longer authenticate anyway.

The decisions are pure functions (`plan_secret`); `sync` does the I/O.
"""

from __future__ import annotations

import base64
import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass

from pocketkube.api import errors
from pocketkube.api.resources import BY_PLURAL
from pocketkube.client.informer import object_key
from pocketkube.client.interface import Client
from pocketkube.controllers.base import Controller, SharedInformers, split_key

__all__ = ["NAME_ANNOTATION", "SA_TOKEN_TYPE", "UID_ANNOTATION", "Plan", "TokensController", "plan_secret"]

log = logging.getLogger(__name__)

SECRETS = BY_PLURAL[("", "secrets")]
SERVICE_ACCOUNTS = BY_PLURAL[("", "serviceaccounts")]
SA_TOKEN_TYPE = "kubernetes.io/service-account-token"
NAME_ANNOTATION = "kubernetes.io/service-account.name"
UID_ANNOTATION = "kubernetes.io/service-account.uid"
_SECRET_PREFIX = "secret:"

# (service account, secret name) → the token
Mint = Callable[[dict, str], str]


@dataclass(frozen=True)
class Plan:
    delete: bool = False
    update: dict | None = None  # the Secret to write


def _b64(data: bytes | str) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


def is_token_secret(secret: dict) -> bool:
    return secret.get("type") == SA_TOKEN_TYPE


def references(secret: dict, sa: dict) -> bool:
    """Whether a token Secret belongs to this ServiceAccount (by name, and by uid once recorded)."""
    ann = (secret.get("metadata") or {}).get("annotations") or {}
    m = sa["metadata"]
    if ann.get(NAME_ANNOTATION) != m["name"]:
        return False
    return not ann.get(UID_ANNOTATION) or ann[UID_ANNOTATION] == m.get("uid")


def plan_secret(secret: dict, sa: dict | None, mint: Mint, root_ca: bytes) -> Plan:
    """What a token Secret needs: nothing, its data filled in, or deleting (no such account)."""
    if (secret.get("metadata") or {}).get("deletionTimestamp"):
        return Plan()
    if sa is None or not references(secret, sa) or sa["metadata"].get("deletionTimestamp"):
        return Plan(delete=True)
    data = secret.get("data") or {}
    namespace = secret["metadata"]["namespace"]
    want_ca, want_ns = _b64(root_ca), _b64(namespace)
    ann = secret["metadata"].get("annotations") or {}
    if data.get("token") and data.get("ca.crt") == want_ca and data.get("namespace") == want_ns \
            and ann.get(UID_ANNOTATION) == sa["metadata"]["uid"]:
        return Plan()
    new = copy.deepcopy(secret)
    new["metadata"].setdefault("annotations", {})[UID_ANNOTATION] = sa["metadata"]["uid"]
    new_data = dict(data)
    new_data["ca.crt"], new_data["namespace"] = want_ca, want_ns
    if not data.get("token"):
        new_data["token"] = _b64(mint(sa, secret["metadata"]["name"]))
    new["data"] = new_data
    return Plan(update=new)


class TokensController(Controller):
    name = "serviceaccount-token-controller"

    def __init__(self, client: Client, informers: SharedInformers, mint: Mint, root_ca: bytes, *,
                 workers: int = 2) -> None:
        self.client = client
        self.mint = mint
        self.root_ca = root_ca
        self.secrets = informers.get(SECRETS)
        self.accounts = informers.get(SERVICE_ACCOUNTS)
        super().__init__([self.secrets, self.accounts], workers=workers)
        self.secrets.add_handlers(on_add=self._secret, on_update=lambda old, new: self._secret(new))
        self.accounts.add_handlers(on_add=self._account, on_update=lambda old, new: self._account(new),
                                   on_delete=self._account)

    def _secret(self, secret: dict) -> None:
        if is_token_secret(secret):
            self.queue.add(_SECRET_PREFIX + object_key(secret))

    def _account(self, sa: dict) -> None:
        """A new, changed or deleted account: its token Secrets are looked at again."""
        ns = sa["metadata"].get("namespace", "")
        for secret in self.secrets.list():
            if secret["metadata"].get("namespace") == ns and is_token_secret(secret) and \
                    ((secret["metadata"].get("annotations") or {}).get(NAME_ANNOTATION) == sa["metadata"]["name"]):
                self.queue.add(_SECRET_PREFIX + object_key(secret))

    async def sync(self, key: str) -> None:
        namespace, name = split_key(key.removeprefix(_SECRET_PREFIX))
        secret = self.secrets.get(f"{namespace}/{name}")
        if secret is None or not is_token_secret(secret):
            return
        sa_name = (secret["metadata"].get("annotations") or {}).get(NAME_ANNOTATION, "")
        sa = self.accounts.get(f"{namespace}/{sa_name}")
        if sa is None and sa_name:  # the cache may lag a just-created account: ask the server
            try:
                sa = await self.client.get(SERVICE_ACCOUNTS, namespace, sa_name)
            except errors.NotFound:
                sa = None
        plan = plan_secret(secret, sa, self.mint, self.root_ca)
        if plan.delete:
            log.info("deleting token secret %s/%s: service account %r is gone", namespace, name, sa_name)
            try:
                await self.client.delete(SECRETS, namespace, name,
                                         preconditions={"uid": secret["metadata"].get("uid")})
            except (errors.NotFound, errors.Conflict):
                pass
        elif plan.update is not None:
            await self.client.update(SECRETS, plan.update)
