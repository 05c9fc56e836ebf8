"""Status bodies back into ApiErrors (the client side of api/errors.py)."""

from __future__ import annotations

from pocketkube.api import errors

_BY_REASON: dict[str, type[errors.ApiError]] = {
    cls.reason: cls for cls in (
        errors.BadRequest, errors.Unauthorized, errors.Forbidden, errors.NotFound, errors.AlreadyExists,
        errors.Conflict, errors.Gone, errors.RequestEntityTooLarge, errors.UnsupportedMediaType,
        errors.MethodNotAllowed, errors.NotAcceptable, errors.InternalError, errors.ServiceUnavailable)
}
_BY_CODE: dict[int, type[errors.ApiError]] = {cls.code: cls for cls in reversed(list(_BY_REASON.values()))}


def from_status(code: int, body: dict | None) -> errors.ApiError:
    body = body if isinstance(body, dict) else {}
    reason = body.get("reason", "")
    message = body.get("message") or f"the server responded with status {code}"
    cls = _BY_REASON.get(reason) or _BY_CODE.get(code) or errors.ApiError
    err = errors.ApiError.__new__(cls)
    errors.ApiError.__init__(err, message, body.get("details"))
    err.code = code
    if reason:
        err.reason = reason
    return err
