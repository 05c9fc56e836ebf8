"""LIST paging and resourceVersion semantics (registry/listing.py, ObjectStore.list_page) over
SQLite: snapshot pages, selectors, remainingItemCount, RV match, 410/504, bad tokens."""

from __future__ import annotations

import base64

import orjson
import pytest

from pocketkube.api import errors
from pocketkube.registry import listing


def _cm(name: str, labels: dict | None = None) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": labels or {}},
            "data": {"k": name}}


def _names(result) -> list[str]:
    return [orjson.loads(v)["metadata"]["name"] for v in result.items]


def _token(rv: int, start: str, v: str = "meta.k8s.io/v1") -> str:
    raw = orjson.dumps({"v": v, "rv": rv, "start": start})
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@pytest.fixture
async def cms(registry):
    store = registry.store("", "configmaps")
    for i in range(5):
        await store.create(_cm(f"cm-{i}", {"even": str(i % 2 == 0).lower()}), "default")
    return store


def test_continue_tokens_are_upstreams():
    token = listing.encode_continue("/registry/pods/default/web\x00", "/registry/pods/", 42)
    assert "=" not in token
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    assert raw == b'{"v":"meta.k8s.io/v1","rv":42,"start":"default/web\\u0000"}'
    assert listing.decode_continue(token, "/registry/pods/") == ("/registry/pods/default/web\x00", 42)


@pytest.mark.parametrize("token,why", [
    ("%%%", "continue key is not valid"),
    (_token(0, "a"), "incorrect encoded start resourceVersion"),
    (_token(5, ""), "encoded start key empty"),
    (_token(5, "a", v="meta.k8s.io/v2"), "server does not recognize this encoded version"),
    (_token(5, "../secrets/x"), "continue key is not valid: ../secrets/x"),
    (_token(5, "//x"), "continue key is not valid"),
    (base64.urlsafe_b64encode(b"[1]").decode(), "continue key is not valid"),
])
def test_bad_continue_tokens_are_400(token, why):
    with pytest.raises(errors.BadRequest, match="invalid continue token") as e:
        listing.decode_continue(token, "/registry/pods/")
    assert why in e.value.message


@pytest.mark.parametrize("rv,match,cont,message", [
    ("", "Exact", "", "resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden unless resourceVersion "
                      "is provided"),
    ("5", "Exact", "t", "resourceVersionMatch is forbidden when continue is provided"),
    ("5", "Newest", "", 'resourceVersionMatch: Unsupported value: "Newest": supported values: "", "Exact", '
                        '"NotOlderThan"'),
    ("0", "Exact", "", 'resourceVersionMatch "exact" is forbidden for resourceVersion "0"'),
])
def test_list_options_validation_is_upstreams(rv, match, cont, message):
    with pytest.raises(errors.Invalid) as e:
        listing.validate_list_options(rv, match, cont)
    assert e.value.code == 422 and e.value.message.startswith('ListOptions.meta.k8s.io "" is invalid: ')
    assert message in e.value.message


def test_read_plans():
    p = "/registry/pods/"
    assert listing.plan_read(p, resource_version="", match="", continue_token="", limit=0).consistent
    assert listing.plan_read(p, resource_version="0", match="", continue_token="", limit=5) == listing.ReadPlan()
    assert listing.plan_read(p, resource_version="7", match="", continue_token="", limit=5).revision == 7
    assert listing.plan_read(p, resource_version="7", match="", continue_token="", limit=0) == \
        listing.ReadPlan(minimum=7)
    assert listing.plan_read(p, resource_version="7", match="NotOlderThan", continue_token="", limit=5) == \
        listing.ReadPlan(minimum=7)
    assert listing.plan_read(p, resource_version="7", match="Exact", continue_token="", limit=0).revision == 7
    cont = listing.plan_read(p, resource_version="", match="", continue_token=_token(-1, "a\x00"), limit=2)
    assert (cont.revision, cont.start) == (0, "/registry/pods/a\x00")
    with pytest.raises(errors.BadRequest, match="specifying resource version is not allowed when using continue"):
        listing.plan_read(p, resource_version="9", match="", continue_token=_token(3, "a"), limit=2)
    with pytest.raises(errors.BadRequest, match="invalid resource version"):
        listing.plan_read(p, resource_version="-1", match="", continue_token="", limit=0)


async def test_pages_are_a_snapshot_of_the_first_pages_revision(cms):
    first = await cms.list_page("default", limit=2)
    assert _names(first) == ["cm-0", "cm-1"] and first.remaining == 3
    await cms.create(_cm("cm-15"), "default")  # sorts between pages: not in this listing
    await cms.delete("default", "cm-3")
    await cms.update("default", "cm-2", {**cms.get("default", "cm-2"), "data": {"k": "changed"}})
    second = await cms.list_page("default", limit=2, continue_token=first.continue_token)
    assert _names(second) == ["cm-2", "cm-3"] and second.resource_version == first.resource_version
    assert orjson.loads(second.items[0])["data"] == {"k": "cm-2"}  # as of the first page
    third = await cms.list_page("default", limit=2, continue_token=second.continue_token)
    assert _names(third) == ["cm-4"] and not third.continue_token and third.remaining is None
    fresh = await cms.list_page("default")
    assert _names(fresh) == ["cm-0", "cm-1", "cm-15", "cm-2", "cm-4"]
    assert fresh.resource_version == cms.current_revision()


async def test_a_selector_keeps_fetching_until_the_page_is_full(cms):
    def even(obj):
        return obj["metadata"]["labels"]["even"] == "true"
    first = await cms.list_page("default", match=even, limit=2)
    assert _names(first) == ["cm-0", "cm-2"] and first.continue_token and first.remaining is None
    rest = await cms.list_page("default", match=even, limit=2, continue_token=first.continue_token)
    assert _names(rest) == ["cm-4"] and not rest.continue_token


async def test_resource_version_match(cms):
    rev = cms.current_revision()
    await cms.delete("default", "cm-0")
    exact = await cms.list_page("default", resource_version=str(rev), resource_version_match="Exact")
    assert "cm-0" in _names(exact) and exact.resource_version == rev
    legacy = await cms.list_page("default", resource_version=str(rev), limit=10)  # legacy RV + limit = Exact
    assert "cm-0" in _names(legacy)
    newer = await cms.list_page("default", resource_version=str(rev), resource_version_match="NotOlderThan")
    assert "cm-0" not in _names(newer) and newer.resource_version == rev + 1
    anything = await cms.list_page("default", resource_version="0")
    assert anything.resource_version == rev + 1
    with pytest.raises(errors.Timeout) as e:
        await cms.list_page("default", resource_version=str(rev + 10), resource_version_match="NotOlderThan")
    status = e.value.status()
    assert status["code"] == 504 and status["reason"] == "Timeout"
    assert status["message"] == f"Timeout: Too large resource version: {rev + 10}, current: {rev + 1}"
    assert status["details"]["causes"][0]["reason"] == "ResourceVersionTooLarge"
    with pytest.raises(errors.Timeout):
        await cms.list_page("default", resource_version=str(rev + 10), resource_version_match="Exact")


async def test_compacted_revisions_are_410(registry, cms):
    first = await cms.list_page("default", limit=2)
    old = first.resource_version
    for i in range(3):
        await cms.create(_cm(f"later-{i}"), "default")
    # The compactor's first tick only records the revision (several servers agree on it through
    # compact_rev_key); the second compacts up to it.
    await registry.compact(1)
    await registry.compact(1)
    with pytest.raises(errors.Gone) as e:
        await cms.list_page("default", resource_version=str(old), resource_version_match="Exact")
    assert e.value.message == listing.EXPIRED and e.value.code == 410
    with pytest.raises(errors.Gone) as e:
        await cms.list_page("default", limit=2, continue_token=first.continue_token)
    status = e.value.status()
    assert status["reason"] == "Expired" and status["message"] == listing.INCONSISTENT_CONTINUE
    token = status["metadata"]["continue"]
    assert listing.decode_continue(token, "/x/") == ("/x/cm-1\x00", -1)
    # the rv -1 token goes on at the latest state
    rest = await cms.list_page("default", limit=2, continue_token=token)
    assert _names(rest) == ["cm-2", "cm-3"] and rest.resource_version == cms.current_revision()


async def test_a_value_over_the_stores_limit_is_413(tmp_path):
    from pocketkube.registry.registry import Registry
    from pocketkube.storage.sqlite import SQLiteBackend

    registry = Registry(SQLiteBackend(str(tmp_path / "state.db"), max_request_bytes=64 * 1024))
    await registry.start()
    try:
        store = registry.store("", "configmaps")
        big = _cm("big")
        big["data"] = {"k": "x" * 100_000}
        with pytest.raises(errors.RequestEntityTooLarge) as e:
            await store.create(big, "default")
        assert e.value.code == 413 and "request is too large" in e.value.message
        small = await store.create(_cm("small"), "default")
        with pytest.raises(errors.RequestEntityTooLarge):
            await store.update("default", "small", {**small, "data": {"k": "y" * 100_000}})
        assert store.try_get("default", "big") is None
    finally:
        await registry.close()


def test_storage_unavailable_is_503_with_retry_after():
    e = errors.StorageError("etcd: no leader")
    assert e.code == 503 and e.headers == {"Retry-After": "1"}
    assert e.status()["details"] == {"retryAfterSeconds": 1} and e.status()["reason"] == "ServiceUnavailable"
