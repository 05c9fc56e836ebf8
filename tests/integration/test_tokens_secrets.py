"""Secret-based (legacy) service-account tokens against a server with its control plane: the
tokens controller fills a kubernetes.io/service-account-token Secret, the token authenticates
until the Secret or the account goes, and a Secret naming a missing account is deleted."""

import base64
import shutil
import tempfile
from pathlib import Path

import pytest
from apiclient import Api

from pocketkube.testing.procs import ServerProcess
from pocketkube.testing.waits import wait_for

SAS = "/api/v1/namespaces/default/serviceaccounts"
SECRETS = "/api/v1/namespaces/default/secrets"
SSR = "/apis/authentication.k8s.io/v1/selfsubjectreviews"


@pytest.fixture(scope="module")
def server():
    root = Path(tempfile.mkdtemp(prefix="pk-tokensecrets-"))
    s = ServerProcess(root / "data")  # with its controllers
    s.data_dir.mkdir()
    s.start()
    yield s
    s.stop()
    shutil.rmtree(root, ignore_errors=True)


def token_secret(name: str, sa: str) -> dict:
    return {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/service-account-token",
            "metadata": {"name": name, "annotations": {"kubernetes.io/service-account.name": sa}}}


def whoami(api: Api, token: str) -> int:
    return api.post(SSR, {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}, token=token).status


def test_token_secret_is_filled_and_authenticates_until_deleted(server, connect):
    api = connect(server)
    assert api.post(SAS, {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "legacy"}}).status == 201
    assert api.post(SECRETS, token_secret("legacy-token", "legacy")).status == 201

    def filled():
        s = api.get(f"{SECRETS}/legacy-token").json()
        return s if (s.get("data") or {}).get("token") else None
    secret = wait_for(filled, timeout=20, what="the token secret filled in")
    assert base64.b64decode(secret["data"]["namespace"]) == b"default"
    assert base64.b64decode(secret["data"]["ca.crt"]) == server.ca_file.read_bytes()
    sa = api.get(f"{SAS}/legacy").json()
    assert secret["metadata"]["annotations"]["kubernetes.io/service-account.uid"] == sa["metadata"]["uid"]
    token = base64.b64decode(secret["data"]["token"]).decode()
    r = api.post(SSR, {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}, token=token)
    assert r.status == 201 and r.json()["status"]["userInfo"]["username"] == "system:serviceaccount:default:legacy"
    assert api.request("DELETE", f"{SECRETS}/legacy-token").status == 200
    assert whoami(api, token) == 401


def test_deleting_the_account_deletes_its_token_secrets(server, connect):
    api = connect(server)
    assert api.post(SAS, {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "brief"}}).status == 201
    assert api.post(SECRETS, token_secret("brief-token", "brief")).status == 201
    wait_for(lambda: (api.get(f"{SECRETS}/brief-token").json().get("data") or {}).get("token"), timeout=20,
             what="the token secret filled in")
    assert api.request("DELETE", f"{SAS}/brief").status == 200
    wait_for(lambda: api.get(f"{SECRETS}/brief-token").status == 404, timeout=20, what="the token secret deleted")
    # A token Secret for an account that does not exist goes too.
    assert api.post(SECRETS, token_secret("stray-token", "nobody")).status == 201
    wait_for(lambda: api.get(f"{SECRETS}/stray-token").status == 404, timeout=20, what="the stray secret deleted")
