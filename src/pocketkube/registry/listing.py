"""LIST semantics as kube-apiserver keeps them: ListOptions validation, which revision a LIST
reads at (resourceVersion / resourceVersionMatch / continue), and continue tokens.

Pure functions; registry/store.py runs the reads they describe. The upstream sources are
apimachinery's ValidateListOptions and apiserver's storage/continue.go and etcd3/store.go GetList.
"""

from __future__ import annotations

import base64
import binascii
import posixpath
from dataclasses import dataclass

import orjson

from pocketkube.api import errors
from pocketkube.api.fields import forbidden, not_supported

TOKEN_VERSION = "meta.k8s.io/v1"
EXACT, NOT_OLDER_THAN = "Exact", "NotOlderThan"
MAX_FETCH = 10_000  # the page a selector-filtered LIST grows to (upstream's maxLimit)

# etcd3/errors.go
EXPIRED = "The resourceVersion for the provided list is too old."
CONTINUE_EXPIRED = ("The provided continue parameter is too old to display a consistent list result. "
                    "You can start a new list without the continue parameter.")
INCONSISTENT_CONTINUE = (
    "The provided continue parameter is too old to display a consistent list result. You can start a "
    "new list without the continue parameter, or use the continue token in this response to retrieve "
    "the remainder of the results. Continuing with the provided token results in an inconsistent list - "
    "objects that were created, modified, or deleted between the time the first chunk was returned "
    "and now may show up in the list.")


@dataclass(frozen=True)
class ReadPlan:
    """Where a LIST reads.

    revision: the exact revision to read at (0: the latest); minimum: a revision the result must
    not be older than (0: none); consistent: first find the store's latest committed revision
    and read there (unset resourceVersion); start: the first key (a continue token's).
    """
    revision: int = 0
    minimum: int = 0
    consistent: bool = False
    start: str = ""
    from_continue: bool = False


def validate_list_options(resource_version: str, match: str, continue_token: str) -> None:
    """apimachinery's ValidateListOptions (non-watch): a 422 on ListOptions.meta.k8s.io."""
    errs = []
    if match:
        if not resource_version:
            errs.append(forbidden("resourceVersionMatch",
                                  "resourceVersionMatch is forbidden unless resourceVersion is provided"))
        if continue_token:
            errs.append(forbidden("resourceVersionMatch", "resourceVersionMatch is forbidden when continue is provided"))
        if match not in (EXACT, NOT_OLDER_THAN):
            errs.append(not_supported("resourceVersionMatch", match, [EXACT, NOT_OLDER_THAN, ""]))
        if match == EXACT and resource_version == "0":
            errs.append(forbidden("resourceVersionMatch",
                                  'resourceVersionMatch "exact" is forbidden for resourceVersion "0"'))
    if errs:
        raise errors.Invalid("ListOptions", "", errs, "meta.k8s.io")


def parse_resource_version(value: str) -> int:
    """A resourceVersion as a revision ("" and "0" are 0), or 400 as upstream's versioner says it."""
    if value in ("", "0"):
        return 0
    if not value.isdigit() or not value.isascii():
        raise errors.BadRequest(f'invalid resource version: resourceVersion: Invalid value: "{value}": '
                                f'strconv.ParseUint: parsing "{value}": invalid syntax')
    return int(value)


def plan_read(prefix: str, *, resource_version: str, match: str, continue_token: str, limit: int) -> ReadPlan:
    """The read a LIST does (etcd3 GetList's choice of revision), after validate_list_options."""
    if continue_token:
        start, rev = decode_continue(continue_token, prefix)
        if resource_version not in ("", "0"):
            raise errors.BadRequest("specifying resource version is not allowed when using continue")
        # rv -1: the first page's revision was compacted; go on at the latest, inconsistently
        return ReadPlan(revision=max(rev, 0), start=start, from_continue=True)
    if not resource_version:
        return ReadPlan(consistent=True)
    rv = parse_resource_version(resource_version)
    if match == EXACT or (not match and limit > 0 and rv > 0):  # the legacy RV + limit is Exact too
        return ReadPlan(revision=rv, minimum=rv)
    return ReadPlan(minimum=rv)  # NotOlderThan; "0" is any


def encode_continue(key: str, prefix: str, revision: int) -> str:
    """storage/continue.go's token: base64url without padding of {"v","rv","start"}, start being
    the key after the prefix."""
    if not key.startswith(prefix) or key == prefix:
        raise ValueError(f"the key {key!r} is not under the prefix {prefix!r}")
    raw = orjson.dumps({"v": TOKEN_VERSION, "rv": revision, "start": key[len(prefix):]})
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_continue(token: str, prefix: str) -> tuple[str, int]:
    """The start key and revision a token carries; 400 "invalid continue token" as upstream."""
    def bad(why: str) -> errors.BadRequest:
        return errors.BadRequest(f"invalid continue token: {why}")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = orjson.loads(raw)
    except (binascii.Error, ValueError) as e:
        raise bad(f"continue key is not valid: {e}") from None
    if not isinstance(data, dict):
        raise bad("continue key is not valid: not an object")
    version, rv, start = data.get("v"), data.get("rv", 0), data.get("start", "")
    if version != TOKEN_VERSION:
        raise bad(f"continue key is not valid: server does not recognize this encoded version {version}")
    if not isinstance(rv, int) or isinstance(rv, bool) or rv == 0:
        raise bad("continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)")
    if not isinstance(start, str) or not start:
        raise bad("continue key is not valid: encoded start key empty (version meta.k8s.io/v1)")
    # A token must not reach above its prefix (path traversal), as upstream's path.Clean check.
    key = start if start.startswith("/") else "/" + start
    if posixpath.normpath(key) != key or key.startswith("//"):
        raise bad(f"continue key is not valid: {start}")
    return prefix + key[1:], rv


def expired(continue_start: str, prefix: str) -> errors.Gone:
    """The 410 of a LIST at a compacted revision: a paged one carries an rv -1 token."""
    if not continue_start:
        return errors.Gone(EXPIRED)
    try:
        return errors.Gone.with_continue(INCONSISTENT_CONTINUE, encode_continue(continue_start, prefix, -1))
    except ValueError:
        return errors.Gone(CONTINUE_EXPIRED)
