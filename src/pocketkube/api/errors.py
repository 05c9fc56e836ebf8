"""API errors keyed by Status reason, and their Status bodies.

Everything a handler raises for a client's mistake is an ApiError; the HTTP layer turns it into
a `kind: Status` body with the same code, exactly as the Kubernetes apiserver does.
"""

from __future__ import annotations

from typing import Any

from pocketkube.api.fields import FieldError


class ApiError(Exception):
    code = 500
    reason = "InternalError"

    def __init__(self, message: str, details: dict[str, Any] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        self.headers = headers or {}

    def status(self) -> dict[str, Any]:
        s: dict[str, Any] = {
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": self.message, "reason": self.reason,
        }
        if self.reason == "":
            del s["reason"]
        if self.details is not None:
            s["details"] = self.details
        s["code"] = self.code  # last, as the Go struct serializes: clients compare the JSON text
        return s


def _details(resource: str, name: str, group: str = "") -> dict[str, Any]:
    # StatusDetails' field order: name, group, kind.
    d: dict[str, Any] = {"name": name}
    if group:
        d["group"] = group
    d["kind"] = resource
    return d


def _qualified(resource: str, group: str) -> str:
    return f"{resource}.{group}" if group else resource


class BadRequest(ApiError):
    code, reason = 400, "BadRequest"


class Unauthorized(ApiError):
    code, reason = 401, "Unauthorized"

    def __init__(self, message: str = "Unauthorized") -> None:
        super().__init__(message)


class Forbidden(ApiError):
    code, reason = 403, "Forbidden"


class NotFound(ApiError):
    code, reason = 404, "NotFound"

    @classmethod
    def object(cls, resource: str, name: str, group: str = "") -> NotFound:
        return cls(f'{_qualified(resource, group)} "{name}" not found', _details(resource, name, group))

    @classmethod
    def path(cls) -> NotFound:
        return cls("the server could not find the requested resource", {})


class MethodNotAllowed(ApiError):
    code, reason = 405, "MethodNotAllowed"


class AlreadyExists(ApiError):
    code, reason = 409, "AlreadyExists"

    @classmethod
    def object(cls, resource: str, name: str, group: str = "") -> AlreadyExists:
        return cls(f'{_qualified(resource, group)} "{name}" already exists', _details(resource, name, group))


class Conflict(ApiError):
    code, reason = 409, "Conflict"

    @classmethod
    def modified(cls, resource: str, name: str, group: str = "") -> Conflict:
        return cls(
            f'Operation cannot be fulfilled on {_qualified(resource, group)} "{name}": the object has been '
            "modified; please apply your changes to the latest version and try again",
            _details(resource, name, group))


class Gone(ApiError):
    code, reason = 410, "Expired"


class RequestEntityTooLarge(ApiError):
    code, reason = 413, "RequestEntityTooLarge"


class UnsupportedMediaType(ApiError):
    code, reason = 415, "UnsupportedMediaType"


class NotAcceptable(ApiError):
    code, reason = 406, "NotAcceptable"


class Invalid(ApiError):
    code, reason = 422, "Invalid"

    def __init__(self, kind: str, name: str, errors: list[FieldError], group: str = "") -> None:
        self.errors = errors
        gk = f"{kind}.{group}" if group else kind
        agg = [str(e) for e in dict.fromkeys(str(e) for e in errors)]
        text = agg[0] if len(agg) == 1 else "[" + ", ".join(agg) + "]"
        details = _details(kind, name, group)
        details["causes"] = [{"reason": e.reason, "message": e.body(), "field": e.field} for e in errors]
        super().__init__(f'{gk} "{name}" is invalid: {text}', details)


class TooManyRequests(ApiError):
    code, reason = 429, "TooManyRequests"

    def __init__(self, message: str = "Too many requests, please try again later.", retry_after: int = 1) -> None:
        super().__init__(message, {"retryAfterSeconds": retry_after}, {"Retry-After": str(retry_after)})


class InternalError(ApiError):
    code, reason = 500, "InternalError"

    def __init__(self, err: str) -> None:
        super().__init__(f"Internal error occurred: {err}", {"causes": [{"message": err}]})


class ServiceUnavailable(ApiError):
    code, reason = 503, "ServiceUnavailable"


class StorageError(ApiError):
    """The store cannot serve (disk full, database locked, etcd without quorum): the only 5xx we
    allow; the client retries after a second."""
    code, reason = 503, "ServiceUnavailable"

    def __init__(self, message: str) -> None:
        super().__init__(message, {"retryAfterSeconds": 1}, {"Retry-After": "1"})
