"""The default ServiceAccount and kube-root-ca.crt in every namespace (controllers/serviceaccounts.py)."""

from __future__ import annotations

import pytest
from async_waits import until

from pocketkube.api.resources import BY_PLURAL
from pocketkube.controllers.serviceaccounts import (
    DESCRIPTION_ANNOTATION,
    RootCACertPublisher,
    ServiceAccountsController,
    missing_service_accounts,
    root_ca_change,
)
from pocketkube.testing.controllers import controllers_on
from pocketkube.testing.fakeclient import FakeClient

pytestmark = pytest.mark.unit

NAMESPACES = BY_PLURAL[("", "namespaces")]
SAS = BY_PLURAL[("", "serviceaccounts")]
CMS = BY_PLURAL[("", "configmaps")]
CA = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
ACTIVE = {"metadata": {"name": "a"}, "status": {"phase": "Active"}}
GOING = {"metadata": {"name": "a", "deletionTimestamp": "2026-01-01T00:00:00Z"}, "status": {"phase": "Terminating"}}


def test_missing_service_accounts() -> None:
    assert [b["metadata"]["name"] for b in missing_service_accounts(ACTIVE, set())] == ["default"]
    assert missing_service_accounts(ACTIVE, {"default"}) == []
    assert missing_service_accounts(GOING, set()) == [] and missing_service_accounts(None, set()) == []


def test_root_ca_change() -> None:
    verb, body = root_ca_change(ACTIVE, None, CA)
    assert verb == "create" and body["data"] == {"ca.crt": CA}
    assert DESCRIPTION_ANNOTATION in body["metadata"]["annotations"]
    assert root_ca_change(ACTIVE, body, CA) is None
    edited = {**body, "metadata": {**body["metadata"], "resourceVersion": "3"}, "data": {"ca.crt": "x", "y": "z"}}
    verb, fixed = root_ca_change(ACTIVE, edited, CA)
    assert verb == "update" and fixed["data"] == {"ca.crt": CA} and fixed["metadata"]["resourceVersion"] == "3"
    assert root_ca_change(GOING, None, CA) is None


async def test_controllers_keep_both_in_every_namespace() -> None:
    fake = FakeClient()
    await fake.create(NAMESPACES, {"metadata": {"name": "default"}})
    async with controllers_on(fake, lambda informers, _: [ServiceAccountsController(fake, informers),
                                                          RootCACertPublisher(fake, informers, CA)]):
        def names(res, ns: str) -> set[str]:
            return {o["metadata"]["name"] for o in fake.objects(res, ns)}
        await until(lambda: "default" in names(SAS, "default") and "kube-root-ca.crt" in names(CMS, "default"),
                    "both created")
        await fake.create(NAMESPACES, {"metadata": {"name": "team"}})
        await until(lambda: "default" in names(SAS, "team") and "kube-root-ca.crt" in names(CMS, "team"),
                    "both in the new namespace")
        await fake.delete(SAS, "team", "default")
        cm = next(o for o in fake.objects(CMS, "team"))
        await fake.update(CMS, {**cm, "data": {"ca.crt": "tampered"}})
        await until(lambda: "default" in names(SAS, "team"), "the ServiceAccount re-created")
        await until(lambda: fake.objects(CMS, "team")[0]["data"] == {"ca.crt": CA}, "the CA put back")
        await fake.delete(CMS, "team", "kube-root-ca.crt")
        await until(lambda: "kube-root-ca.crt" in names(CMS, "team"), "the ConfigMap re-created")
