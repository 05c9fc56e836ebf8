"""The tokens controller's decisions (controllers/serviceaccount_tokens.py): what a
kubernetes.io/service-account-token Secret needs."""

from __future__ import annotations

import base64

from pocketkube.controllers.serviceaccount_tokens import NAME_ANNOTATION, UID_ANNOTATION, plan_secret

SA = {"metadata": {"name": "robot", "namespace": "ns", "uid": "u1"}}
CA = b"-----BEGIN CERTIFICATE-----\n"


def _secret(**extra) -> dict:
    s = {"metadata": {"name": "robot-token", "namespace": "ns", "annotations": {NAME_ANNOTATION: "robot"}},
         "type": "kubernetes.io/service-account-token"}
    s.update(extra)
    return s


def _mint(sa: dict, name: str) -> str:
    return f"jwt-for-{sa['metadata']['name']}-{name}"


def b64(s: str | bytes) -> str:
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


def test_fills_token_ca_and_namespace_and_records_the_uid():
    plan = plan_secret(_secret(), SA, _mint, CA)
    assert not plan.delete
    assert plan.update["data"] == {"ca.crt": b64(CA), "namespace": b64("ns"), "token": b64("jwt-for-robot-robot-token")}
    assert plan.update["metadata"]["annotations"][UID_ANNOTATION] == "u1"
    # Filled in: nothing more to do; a token already there is kept.
    assert plan_secret(plan.update, SA, _mint, CA).update is None
    kept = plan_secret(_secret(data={"token": b64("mine")}), SA, _mint, CA).update
    assert kept["data"]["token"] == b64("mine")


def test_a_secret_without_its_account_is_deleted():
    assert plan_secret(_secret(), None, _mint, CA).delete
    other = _secret()
    other["metadata"]["annotations"][UID_ANNOTATION] = "old"
    assert plan_secret(other, SA, _mint, CA).delete
    deleting = {"metadata": {**SA["metadata"], "deletionTimestamp": "2020-01-01T00:00:00Z"}}
    assert plan_secret(_secret(), deleting, _mint, CA).delete


def test_a_secret_being_deleted_is_left_alone():
    s = _secret()
    s["metadata"]["deletionTimestamp"] = "2020-01-01T00:00:00Z"
    plan = plan_secret(s, None, _mint, CA)
    assert not plan.delete and plan.update is None
