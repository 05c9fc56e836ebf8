"""The token cleaner (upstream's pkg/controller/bootstrap/tokencleaner.go): deletes bootstrap
token Secrets in kube-system once their expiration has passed, and looks again at a Secret
when it is due."""

from __future__ import annotations

import datetime
import logging

from pocketkube.api import bootstraptoken, errors
from pocketkube.api.resources import BY_PLURAL
from pocketkube.client.informer import object_key
from pocketkube.client.interface import Client
from pocketkube.controllers.base import Controller, SharedInformers, split_key

log = logging.getLogger(__name__)
SECRETS = BY_PLURAL[("", "secrets")]


def seconds_left(secret: dict, now: datetime.datetime) -> float | None:
    """Seconds until a bootstrap token Secret expires (≤ 0: expired; None: never, or not one)."""
    m = secret.get("metadata") or {}
    if secret.get("type") != bootstraptoken.SECRET_TYPE or m.get("namespace") != bootstraptoken.NAMESPACE:
        return None
    exp = bootstraptoken.parse_time(bootstraptoken.secret_data(secret).get("expiration", ""))
    return None if exp is None else (exp - now).total_seconds()


class TokenCleaner(Controller):
    name = "tokencleaner"

    def __init__(self, client: Client, informers: SharedInformers) -> None:
        self.client = client
        self.secrets = informers.get(SECRETS)
        super().__init__([self.secrets], workers=1)
        self.secrets.add_handlers(on_add=self._enqueue, on_update=lambda old, new: self._enqueue(new))

    def _enqueue(self, secret: dict) -> None:
        if secret.get("type") == bootstraptoken.SECRET_TYPE:
            self.queue.add(object_key(secret))

    async def sync(self, key: str) -> None:
        secret = self.secrets.get(key)
        if secret is None:
            return
        left = seconds_left(secret, datetime.datetime.now(datetime.UTC))
        if left is None:
            return
        if left > 0:
            self.queue.add_after(key, left + 0.5)
            return
        namespace, name = split_key(key)
        log.info("tokencleaner: deleting expired bootstrap token %s", key)
        try:
            await self.client.delete(SECRETS, namespace, name, preconditions={"uid": secret["metadata"].get("uid")})
        except (errors.NotFound, errors.Conflict):
            pass
