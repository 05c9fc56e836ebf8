"""LimitRanger and ResourceQuota admission through a real API server: defaults applied,
violations answered 403 in upstream's words, quota charged and its table printed."""

from __future__ import annotations

from apiclient import PODS, Api

LIMITRANGES = "/api/v1/namespaces/default/limitranges"
QUOTAS = "/api/v1/namespaces/default/resourcequotas"
TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io"


def pod(name: str, resources: dict | None = None) -> dict:
    c = {"name": "c", "image": "nginx"}
    if resources is not None:
        c["resources"] = resources
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": {"containers": [c]}}


def test_limitrange_defaults_and_max(api: Api):
    lr = {"apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": "lr"},
          "spec": {"limits": [{"type": "Container", "max": {"cpu": "1"}, "defaultRequest": {"cpu": "100m"}}]}}
    assert api.post(LIMITRANGES, lr).status == 201
    created = api.post(PODS, pod("defaulted"))
    assert created.status == 201, created.body
    assert created.json()["spec"]["containers"][0]["resources"] == {"limits": {"cpu": "1"}, "requests": {"cpu": "100m"}}
    r = api.post(PODS, pod("big", {"limits": {"cpu": "2"}}))
    assert r.status == 403, r.body
    assert r.json()["message"] == 'pods "big" is forbidden: maximum cpu usage per Container is 1, but limit is 2'
    bad = {**lr, "metadata": {"name": "bad"},
           "spec": {"limits": [{"type": "Container", "min": {"cpu": "2"}, "max": {"cpu": "1"}}]}}
    r = api.post(LIMITRANGES, bad)
    assert r.status == 422 and "spec.limits[0].min[cpu]: Invalid value" in r.json()["message"]
    table = api.request("GET", LIMITRANGES, headers={"Accept": TABLE}).json()
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Created At"]
    assert api.request("DELETE", LIMITRANGES + "/lr").status == 200
    assert api.request("DELETE", PODS + "/defaulted?gracePeriodSeconds=0").status == 200


def test_quota_counts_and_requires_requests(api: Api):
    q = {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "q"},
         "spec": {"hard": {"pods": "1", "requests.cpu": "1", "count/configmaps": "0"}}}
    assert api.post(QUOTAS, q).status == 201
    r = api.post(PODS, pod("nocpu"))
    assert r.status == 403
    assert r.json()["message"] == 'pods "nocpu" is forbidden: failed quota: q: must specify requests.cpu for: c'
    assert api.post(PODS, pod("one", {"requests": {"cpu": "500m"}})).status == 201
    r = api.post(PODS, pod("two", {"requests": {"cpu": "100m"}}))
    assert r.status == 403
    assert r.json()["message"] == ('pods "two" is forbidden: exceeded quota: q, requested: pods=1, used: pods=1, '
                                   "limited: pods=1")
    status = api.get(QUOTAS + "/q").json()["status"]
    assert status["used"]["pods"] == "1" and status["used"]["requests.cpu"] == "500m"
    table = api.request("GET", QUOTAS, headers={"Accept": TABLE}).json()
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Age", "Request", "Limit"]
    assert "pods: 1/1" in table["rows"][0]["cells"][2]
    r = api.post("/api/v1/namespaces/default/configmaps",
                 {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}})
    assert r.status == 403 and "exceeded quota: q, requested: count/configmaps=1" in r.json()["message"]
    assert api.request("DELETE", QUOTAS + "/q").status == 200
    assert api.request("DELETE", PODS + "/one?gracePeriodSeconds=0").status == 200


PDBS = "/apis/policy/v1/namespaces/default/poddisruptionbudgets"


def test_eviction_without_budget_deletes_and_with_unprocessed_budget_429(api: Api):
    resources = api.get("/api/v1").json()["resources"]
    ev = next(r for r in resources if r["name"] == "pods/eviction")
    assert (ev["group"], ev["version"], ev["kind"], ev["verbs"]) == ("policy", "v1", "Eviction", ["create"])
    labeled = pod("guarded")
    labeled["metadata"]["labels"] = {"app": "g"}
    assert api.post(PODS, labeled).status == 201
    assert api.post(PODS, pod("free")).status == 201
    # Pending pods need no budget: mark them Running so the budget applies.
    for name in ("guarded", "free"):
        r = api.request("PATCH", f"{PODS}/{name}/status", {"status": {"phase": "Running"}},
                        content_type="application/merge-patch+json")
        assert r.status == 200, r.body
    body = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "free"},
            "deleteOptions": {"gracePeriodSeconds": 0}}
    r = api.post(PODS + "/free/eviction", body)
    assert r.status == 201 and r.json()["status"] == "Success", r.body
    assert api.get(PODS + "/free").status == 404
    pdb_body = {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "b"},
                "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "g"}}}}
    assert api.post(PDBS, pdb_body).status == 201
    r = api.post(PODS + "/guarded/eviction", {**body, "metadata": {"name": "guarded"}})
    assert r.status == 429, r.body
    status = r.json()
    assert status["reason"] == "TooManyRequests"
    assert status["message"] == "Cannot evict pod as it would violate the pod's disruption budget."
    assert status["details"]["causes"][0]["reason"] == "DisruptionBudget"
    bad = {**pdb_body, "metadata": {"name": "bad"}, "spec": {"minAvailable": 1, "maxUnavailable": 1}}
    r = api.post(PDBS, bad)
    assert r.status == 422 and "minAvailable and maxUnavailable cannot be both set" in r.json()["message"]
    assert api.request("DELETE", PDBS + "/b").status == 200
    assert api.request("DELETE", PODS + "/guarded?gracePeriodSeconds=0").status == 200


def test_scoped_quota_counts_only_matching_pods(api: Api):
    q = {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "be"},
         "spec": {"hard": {"pods": "1"}, "scopes": ["BestEffort"]}}
    assert api.post(QUOTAS, q).status == 201
    assert api.post(PODS, pod("be-1")).status == 201
    assert api.post(PODS, pod("burst", {"requests": {"cpu": "100m"}})).status == 201  # not BestEffort
    r = api.post(PODS, pod("be-2"))
    assert r.status == 403 and "exceeded quota: be, requested: pods=1" in r.json()["message"]
    for name in ("be-1", "burst"):
        assert api.request("DELETE", f"{PODS}/{name}?gracePeriodSeconds=0").status == 200
    assert api.request("DELETE", QUOTAS + "/be").status == 200


def test_limitrange_bounds_claims(api: Api):
    lr = {"apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": "storage"},
          "spec": {"limits": [{"type": "PersistentVolumeClaim", "max": {"storage": "2Gi"}}]}}
    assert api.post(LIMITRANGES, lr).status == 201
    claim = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "big"},
             "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "5Gi"}}}}
    r = api.post("/api/v1/namespaces/default/persistentvolumeclaims", claim)
    assert r.status == 403, r.body
    assert r.json()["message"] == ('persistentvolumeclaims "big" is forbidden: maximum storage usage per '
                                   "PersistentVolumeClaim is 2Gi, but request is 5Gi")
    assert api.request("DELETE", LIMITRANGES + "/storage").status == 200


def test_concurrent_creates_never_exceed_a_quota(server, connect):
    from concurrent.futures import ThreadPoolExecutor

    apis = [connect(server) for _ in range(8)]
    q = {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "five"}, "spec": {"hard": {"pods": "5"}}}
    ns = "/api/v1/namespaces/race"
    assert apis[0].post("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                               "metadata": {"name": "race"}}).status == 201
    assert apis[0].post(ns + "/resourcequotas", q).status == 201

    def create(j: int) -> list[int]:  # one connection per thread: Api is not thread-safe
        return [apis[j].post(ns + "/pods", pod(f"p{i}")).status for i in range(j, 24, len(apis))]
    with ThreadPoolExecutor(len(apis)) as pool:
        codes = [c for chunk in pool.map(create, range(len(apis))) for c in chunk]
    assert sorted(codes).count(201) == 5 and codes.count(403) == 19, codes
    assert apis[0].get(ns + "/resourcequotas/five").json()["status"]["used"] == {"pods": "5"}


def test_eviction_bad_input(api: Api):
    r = api.post(PODS + "/nobody/eviction", {"apiVersion": "policy/v1", "kind": "Eviction",
                                             "metadata": {"name": "nobody"}})
    assert r.status == 404 and r.json()["reason"] == "NotFound"
    assert api.post(PODS, pod("target")).status == 201
    r = api.post(PODS + "/target/eviction", {"apiVersion": "policy/v1", "kind": "Eviction",
                                             "metadata": {"name": "other"}})
    assert r.status == 400 and "does not match" in r.json()["message"]
    r = api.post(PODS + "/target/eviction", b"{not json", content_type="application/json")
    assert r.status == 400
    r = api.post(PODS + "/target/eviction", {"apiVersion": "policy/v1", "kind": "Eviction",
                                             "deleteOptions": {"gracePeriodSeconds": "soon"}})
    assert r.status == 400
    assert api.request("GET", PODS + "/target/eviction").status == 405
    r = api.post(PODS + "/target/eviction?dryRun=All", {"apiVersion": "policy/v1", "kind": "Eviction"})
    assert r.status == 201 and api.get(PODS + "/target").status == 200  # a dry run deletes nothing
    assert api.request("DELETE", PODS + "/target?gracePeriodSeconds=0").status == 200
