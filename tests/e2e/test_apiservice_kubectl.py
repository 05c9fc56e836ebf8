"""APIServices (apiregistration.k8s.io/v1) with kubectl 1.32 and the bundled newer one against a
real `pocketkube server`: the autoregistered local group-versions, a service-backed APIService
created from a manifest (unavailable: no Service, then no endpoints), the conflict on re-create,
bad input, delete, and a deleted local APIService coming back."""

from __future__ import annotations

import json

from pocketkube.testing.waits import wait_for


def tag(kubectl) -> str:
    return kubectl.version.replace(".", "-").replace("kubectl-", "")


def rows(out: str) -> tuple[list[str], dict[str, list[str]]]:
    header, *lines = out.strip().splitlines()
    return header.split(), {line.split()[0]: line.split(maxsplit=2) for line in lines}


def apiservice_manifest(group: str, namespace: str, service: str) -> str:
    # The shape of the official Python client's e2e api-service.yaml: an insecure service-backed
    # APIService with the port left to its default.
    return f"""apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata:
  name: v1alpha1.{group}
spec:
  group: {group}
  version: v1alpha1
  groupPriorityMinimum: 1000
  versionPriority: 15
  insecureSkipTLSVerify: true
  service:
    namespace: {namespace}
    name: {service}
"""


ENDPOINTS = """apiVersion: v1
kind: Endpoints
metadata:
  name: wardle-api
  namespace: default
subsets:
- addresses:
  - ip: 127.0.0.1
  ports:
  - name: 443-8443
    port: 8443
"""


def available(kubectl, name: str) -> str:
    _, table = rows(kubectl.ok("get", "apiservices", name))
    return table[name][2].rsplit(maxsplit=1)[0] if name in table else ""


def test_local_apiservices_are_listed_and_available(kubectl):
    def listed():
        header, table = rows(kubectl.ok("get", "apiservices"))
        ready = all(n in table and table[n][2].startswith("True")
                    for n in ("v1.", "v1.apps", "v1.batch", "v1beta1.metrics.k8s.io"))
        return (header, table) if ready else None
    header, table = wait_for(listed, what="the local APIServices Available")
    assert header == ["NAME", "SERVICE", "AVAILABLE", "AGE"]
    assert table["v1.apps"][1] == "Local"
    apps = json.loads(kubectl.ok("get", "apiservice", "v1.apps", "-o", "json"))
    assert apps["spec"] == {"group": "apps", "version": "v1", "groupPriorityMinimum": 17800, "versionPriority": 15}
    cond = apps["status"]["conditions"][0]
    assert (cond["type"], cond["status"], cond["reason"]) == ("Available", "True", "Local")
    # APIServices are in the api-extensions category, as upstream's are.
    assert "apiservice.apiregistration.k8s.io/v1.apps" in kubectl.ok("get", "api-extensions", "-o", "name").split()


def test_service_backed_apiservice_from_manifest(kubectl, tmp_path):
    group = f"wardle-{tag(kubectl)}.example.com"
    name = f"v1alpha1.{group}"
    manifest = tmp_path / "api-service.yaml"
    manifest.write_text(apiservice_manifest(group, "default", "wardle-api"))
    assert kubectl.ok("create", "-f", str(manifest)).strip() == f"apiservice.apiregistration.k8s.io/{name} created"
    try:
        again = kubectl.run("create", "-f", str(manifest))
        assert again.returncode == 1
        assert f'apiservices.apiregistration.k8s.io "{name}" already exists' in again.stderr
        assert "AlreadyExists" in again.stderr
        obj = json.loads(kubectl.ok("get", "apiservice", name, "-o", "json"))
        assert obj["spec"]["service"] == {"namespace": "default", "name": "wardle-api", "port": 443}
        wait_for(lambda: available(kubectl, name) == "False (ServiceNotFound)", what="ServiceNotFound")
        _, table = rows(kubectl.ok("get", "apiservices"))
        assert table[name][1] == "default/wardle-api"
        cond = json.loads(kubectl.ok("get", "apiservice", name, "-o", "json"))["status"]["conditions"][0]
        assert cond["message"] == 'service/wardle-api in "default" is not present'
        # The Service appears without endpoints (no controller-manager here): the next check fails.
        kubectl.ok("create", "service", "clusterip", "wardle-api", "--tcp=443:8443")
        wait_for(lambda: available(kubectl, name) in ("False (EndpointsNotFound)", "False (MissingEndpoints)"),
                 what="no endpoints")
        # With a ready endpoint the discovery check is next, and it fails: no proxying to extension servers.
        kubectl.ok("apply", "-f", "-", input=ENDPOINTS)
        wait_for(lambda: available(kubectl, name) == "False (FailedDiscoveryCheck)", what="FailedDiscoveryCheck")
        cond = json.loads(kubectl.ok("get", "apiservice", name, "-o", "json"))["status"]["conditions"][0]
        assert cond["message"].startswith("failing or missing response from https://")
        assert f"/apis/{group}/v1alpha1: " in cond["message"] and "not supported" in cond["message"]
        # An unavailable APIService does not break discovery.
        resources = kubectl.ok("api-resources")
        assert "apiservices" in resources and "deployments" in resources
    finally:
        kubectl.run("delete", "service", "wardle-api", "--ignore-not-found")
        kubectl.run("delete", "apiservice", name, "--ignore-not-found")
    assert kubectl.run("get", "apiservice", name).returncode == 1


def test_bad_apiservices_are_rejected(kubectl, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(apiservice_manifest("bad.example.com", "default", "x").replace(
        "v1alpha1.bad.example.com", "v1.bad.example.com").replace("1000", "20001"))
    out = kubectl.run("create", "-f", str(bad))
    assert out.returncode == 1
    assert 'metadata.name: Invalid value: "v1.bad.example.com": must be `spec.version+"."+spec.group`: ' \
           '"v1alpha1.bad.example.com"' in out.stderr
    assert "spec.groupPriorityMinimum: Invalid value: 20001: must be positive and less than 20000" in out.stderr


def test_a_deleted_local_apiservice_comes_back(kubectl):
    wait_for(lambda: available(kubectl, "v1.batch") == "True", what="v1.batch Available")
    uid = json.loads(kubectl.ok("get", "apiservice", "v1.batch", "-o", "json"))["metadata"]["uid"]
    kubectl.ok("delete", "apiservice", "v1.batch")

    def recreated():
        out = kubectl.run("get", "apiservice", "v1.batch", "-o", "json")
        return out.returncode == 0 and json.loads(out.stdout)["metadata"]["uid"] != uid
    wait_for(recreated, what="v1.batch recreated")
    wait_for(lambda: available(kubectl, "v1.batch") == "True", what="v1.batch Available again")
