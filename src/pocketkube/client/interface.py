"""The Client protocol: the API verbs components use, whatever carries them.

Controllers, the scheduler, the proxy and the agent type against this protocol, never against
the HTTP client, so a test can hand them the in-memory fake (pocketkube.testing.fakeclient)
and run without a server. Both implementations keep the REST semantics: every write returns
the stored object with a new metadata.resourceVersion, and failures raise the
`pocketkube.api.errors` class the API server answered with (NotFound, Conflict,
AlreadyExists, Gone for a compacted watch, ...), so callers can `except errors.Conflict`
against either.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol

from pocketkube.api.resources import Resource

__all__ = ["JSON_PATCH", "MERGE_PATCH", "STRATEGIC_PATCH", "Client"]

MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"


class Client(Protocol):
    async def get(self, res: Resource, namespace: str, name: str, subresource: str = "") -> dict:
        """The object; NotFound when there is none."""
        ...

    async def list(self, res: Resource, namespace: str = "", label_selector: str = "",
                   field_selector: str = "") -> tuple[list[dict], str]:
        """(items, the list's resourceVersion), to watch from."""
        ...

    def watch(self, res: Resource, namespace: str = "", resource_version: str = "",
              label_selector: str = "", field_selector: str = "",
              timeout_seconds: int | None = None) -> AsyncIterator[tuple[str, dict]]:
        """(type, object) events after `resource_version` (ADDED, MODIFIED, DELETED, BOOKMARK);
        Gone when that version is compacted away, ServiceUnavailable when the stream breaks."""
        ...

    async def create(self, res: Resource, obj: dict, namespace: str = "") -> dict:
        """The created object (metadata.generateName honoured); AlreadyExists for a taken name."""
        ...

    async def create_subresource(self, res: Resource, namespace: str, name: str, subresource: str,
                                 body: dict) -> dict:
        """POST to an object's subresource (serviceaccounts/<name>/token): the server's answer."""
        ...

    async def update(self, res: Resource, obj: dict, subresource: str = "") -> dict:
        """Replace; Conflict when obj's resourceVersion is not the current one."""
        ...

    async def update_status(self, res: Resource, obj: dict) -> dict:
        """update() of the status subresource: only the status changes."""
        ...

    async def patch(self, res: Resource, namespace: str, name: str, patch: Any,
                    content_type: str = MERGE_PATCH, subresource: str = "") -> dict:
        ...

    async def delete(self, res: Resource, namespace: str, name: str, grace_period: int | None = None,
                     propagation: str | None = None, preconditions: dict | None = None) -> Any:
        """NotFound when absent; Conflict when `preconditions` (uid, resourceVersion) do not hold."""
        ...

    async def bind(self, namespace: str, pod: str, node: str) -> None:
        """POST pods/binding: set spec.nodeName once; Conflict when the pod is already bound."""
        ...

    async def close(self) -> None:
        ...
