"""/version and API discovery, in both the aggregated (v2) and legacy forms."""

from __future__ import annotations

import platform
from functools import cache

from pocketkube import KUBERNETES_VERSION, __version__
from pocketkube.api.resources import RESOURCES, Resource, group_versions

AGGREGATED_CONTENT_TYPE = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"


def version_info() -> dict:
    major, minor = KUBERNETES_VERSION.lstrip("v").split(".")[:2]
    return {
        "major": major, "minor": minor,
        "gitVersion": f"{KUBERNETES_VERSION}+pocketkube.{__version__}",
        "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
        "buildDate": "2026-11-26T00:00:00Z", "goVersion": f"python{platform.python_version()}",
        "compiler": "cpython", "platform": f"linux/{platform.machine()}",
    }


def wants_aggregated(accept: str) -> bool:
    return "as=APIGroupDiscoveryList" in accept and "v=v2;" in accept.replace(" ", "") + ";"


def _subresource_parts(res: Resource) -> list[tuple[str, str, str, str, list[str]]]:
    """(name, group, version, kind, verbs) for each subresource we serve."""
    out = []
    for sub in res.subresources:
        if sub == "status":
            out.append(("status", res.group, res.version, res.kind, ["get", "patch", "update"]))
        elif sub == "scale":
            out.append(("scale", "autoscaling", "v1", "Scale", ["get", "patch", "update"]))
        elif sub == "binding":
            out.append(("binding", "", "v1", "Binding", ["create"]))
        elif sub == "log":
            out.append(("log", "", "v1", "Pod", ["get"]))
        elif sub == "proxy":  # GET and HEAD only here (upstream's also proxies writes)
            out.append(("proxy", "", "v1", "NodeProxyOptions", ["get"]))
        elif sub == "eviction":
            out.append(("eviction", "policy", "v1", "Eviction", ["create"]))
        elif sub == "finalize":
            out.append(("finalize", "", "v1", "Namespace", ["update"]))
        elif sub == "token":
            out.append(("token", "authentication.k8s.io", "v1", "TokenRequest", ["create"]))
    return out


def _aggregated_resource(res: Resource) -> dict:
    d = {
        "resource": res.plural,
        "responseKind": {"group": res.group, "version": res.version, "kind": res.kind},
        "scope": "Namespaced" if res.namespaced else "Cluster",
        "singularResource": res.singular,
        "verbs": sorted(res.verbs),
    }
    if res.short_names:
        d["shortNames"] = list(res.short_names)
    if res.categories:
        d["categories"] = list(res.categories)
    subs = [{"subresource": n, "responseKind": {"group": g, "version": v, "kind": k}, "verbs": verbs}
            for n, g, v, k, verbs in _subresource_parts(res)]
    if subs:
        d["subresources"] = subs
    return d


@cache
def aggregated(core: bool) -> dict:
    items = []
    for group, version in group_versions():
        if (group == "") != core:
            continue
        resources = [_aggregated_resource(r) for r in RESOURCES if r.group == group and r.version == version]
        meta: dict = {"creationTimestamp": None}
        if group:
            meta["name"] = group
        items.append({"metadata": meta, "versions": [{"version": version, "resources": resources,
                                                      "freshness": "Current"}]})
    if not core:
        items.append(_metrics_aggregated())
    return {"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {},
            "items": items}


# metrics.k8s.io is served beside the stored kinds (apiserver/resource_metrics.py), as an
# aggregated metrics-server's group would appear.
METRICS_GROUP, METRICS_VERSION = "metrics.k8s.io", "v1beta1"


def _metrics_aggregated() -> dict:
    from pocketkube.apiserver.resource_metrics import RESOURCES as METRICS

    resources = [{"resource": r["name"], "responseKind": {"group": METRICS_GROUP, "version": METRICS_VERSION,
                                                          "kind": r["kind"]},
                  "scope": "Namespaced" if r["namespaced"] else "Cluster", "singularResource": r["name"][:-1],
                  "verbs": r["verbs"]} for r in METRICS]
    return {"metadata": {"name": METRICS_GROUP, "creationTimestamp": None},
            "versions": [{"version": METRICS_VERSION, "resources": resources, "freshness": "Current"}]}


def api_versions(server_address: str) -> dict:
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]}


def _group(group: str, version: str) -> dict:
    gv = {"groupVersion": f"{group}/{version}", "version": version}
    return {"name": group, "versions": [gv], "preferredVersion": gv}


@cache
def api_group_list() -> dict:
    return {"kind": "APIGroupList", "apiVersion": "v1",
            "groups": [*(_group(g, v) for g, v in group_versions() if g), _group(METRICS_GROUP, METRICS_VERSION)]}


def api_group(group: str) -> dict | None:
    if group == METRICS_GROUP:
        return {"kind": "APIGroup", "apiVersion": "v1", **_group(METRICS_GROUP, METRICS_VERSION)}
    for g, v in group_versions():
        if g == group and g:
            return {"kind": "APIGroup", "apiVersion": "v1", **_group(g, v)}
    return None


@cache
def api_resource_list(group: str, version: str) -> dict | None:
    if (group, version) == (METRICS_GROUP, METRICS_VERSION):
        from pocketkube.apiserver.resource_metrics import RESOURCES as METRICS

        return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": f"{group}/{version}",
                "resources": [dict(r) for r in METRICS]}
    resources = []
    for r in RESOURCES:
        if r.group != group or r.version != version:
            continue
        entry = {"name": r.plural, "singularName": r.singular, "namespaced": r.namespaced, "kind": r.kind,
                 "verbs": sorted(r.verbs)}
        if r.short_names:
            entry["shortNames"] = list(r.short_names)
        if r.categories:
            entry["categories"] = list(r.categories)
        resources.append(entry)
        for name, g, v, k, verbs in _subresource_parts(r):
            sub = {"name": f"{r.plural}/{name}", "singularName": "", "namespaced": r.namespaced, "kind": k,
                   "verbs": verbs}
            if (g, v) != (group, version):
                sub["group"], sub["version"] = g, v
            resources.append(sub)
    if not resources:
        return None
    gv = f"{group}/{version}" if group else version
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}
