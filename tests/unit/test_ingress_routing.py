"""The Ingress controller's routing table, built from objects: host and path matching as the
Ingress spec says, backends resolved through Services to ready endpoints, TLS certificates."""

from __future__ import annotations

import base64

import pytest

from pocketkube.ingress.routing import Cluster, build_table, index_slices, normalize_host, path_matches

pytestmark = pytest.mark.unit


def ing(name: str, rules: list[dict], *, created: str = "2025-01-01T00:00:00Z", cls: str = "pocketkube",
        default: dict | None = None, tls: list | None = None, ns: str = "default") -> dict:
    spec: dict = {"ingressClassName": cls, "rules": rules}
    if default:
        spec["defaultBackend"] = default
    if tls:
        spec["tls"] = tls
    return {"metadata": {"name": name, "namespace": ns, "creationTimestamp": created}, "spec": spec}


def rule(host: str, *paths: tuple[str, str, str]) -> dict:
    return {"host": host, "http": {"paths": [
        {"path": p, "pathType": t, "backend": {"service": {"name": svc, "port": {"number": 80}}}}
        for p, t, svc in paths]}}


def service(name: str, ports=(("http", 80),), ns: str = "default") -> dict:
    return {"metadata": {"name": name, "namespace": ns},
            "spec": {"ports": [{"name": n, "port": p, "protocol": "TCP"} for n, p in ports]}}


def eps(svc: str, *ips: str, port: int = 8080, name: str = "http", ready: bool = True, ns: str = "default") -> dict:
    return {"metadata": {"name": f"{svc}-x", "namespace": ns, "labels": {"kubernetes.io/service-name": svc}},
            "ports": [{"name": name, "port": port, "protocol": "TCP"}],
            "endpoints": [{"addresses": [ip], "conditions": {"ready": ready}} for ip in ips]}


CLASSES = {"pocketkube": {"metadata": {"name": "pocketkube"}, "spec": {"controller": "pocketkube.io/ingress"}},
           "other": {"metadata": {"name": "other"}, "spec": {"controller": "example.com/nginx"}}}


def cluster(ingresses, services=(), slices=(), secrets=None) -> Cluster:
    return Cluster(ingresses=list(ingresses), classes=CLASSES,
                   services={f"{s['metadata']['namespace']}/{s['metadata']['name']}": s for s in services},
                   slices=index_slices(slices), secrets=secrets or {})


def test_prefix_matches_whole_elements():
    assert path_matches("Prefix", "/foo", "/foo")
    assert path_matches("Prefix", "/foo", "/foo/bar")
    assert path_matches("Prefix", "/foo/", "/foo")
    assert not path_matches("Prefix", "/foo", "/foobar")
    assert path_matches("Prefix", "/", "/anything")
    assert path_matches("Exact", "/foo", "/foo")
    assert not path_matches("Exact", "/foo", "/foo/")


def test_normalize_host():
    assert normalize_host("App.Local:8080") == "app.local"
    assert normalize_host("[::1]:80") == "[::1]"


def test_longest_path_wins_and_exact_beats_prefix():
    t = build_table(cluster([ing("a", [rule("app.local", ("/", "Prefix", "root"), ("/api", "Prefix", "api"),
                                            ("/api/v1", "Exact", "v1"), ("/api/v1", "Prefix", "v1p"))])]))
    assert t.route("app.local", "/").backend.service == "root"
    assert t.route("app.local", "/api/x").backend.service == "api"
    assert t.route("app.local", "/apix").backend.service == "root"
    assert t.route("app.local", "/api/v1").backend.service == "v1"
    assert t.route("app.local", "/api/v1/x").backend.service == "v1p"


def test_hosts_exact_then_wildcard_then_any_and_default_backend():
    default = {"service": {"name": "fallback", "port": {"number": 80}}}
    t = build_table(cluster([
        ing("a", [rule("app.local", ("/app", "Prefix", "app"))]),
        ing("b", [rule("*.example.com", ("/", "Prefix", "wild")), rule("", ("/any", "Prefix", "any"))],
            default=default),
    ]))
    assert t.route("APP.local:80", "/app/1").backend.service == "app"
    assert t.route("foo.example.com", "/").backend.service == "wild"
    assert t.route("a.b.example.com", "/").backend.service == "fallback"  # one label only
    assert t.route("example.com", "/any").backend.service == "any"
    assert t.route("app.local", "/any").backend.service == "any"  # no app.local path matched
    assert t.route("nowhere", "/x").backend.service == "fallback"


def test_oldest_ingress_wins_a_conflict_and_other_classes_are_ignored():
    t = build_table(cluster([
        ing("new", [rule("h", ("/", "Prefix", "new"))], created="2025-02-01T00:00:00Z"),
        ing("old", [rule("h", ("/", "Prefix", "old"))], created="2025-01-01T00:00:00Z"),
        ing("theirs", [rule("x", ("/", "Prefix", "theirs"))], cls="other"),
    ]))
    assert t.route("h", "/").backend.service == "old"
    assert t.route("x", "/") is None


def test_backends_resolve_to_ready_endpoints_by_port_number_or_name():
    by_name = ing("n", [{"host": "named", "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": {
        "service": {"name": "web", "port": {"name": "metrics"}}}}]}}])
    t = build_table(cluster(
        [ing("a", [rule("app", ("/", "Prefix", "web"))]), by_name],
        services=[service("web", (("http", 80), ("metrics", 9090)))],
        slices=[eps("web", "10.0.0.1", "10.0.0.2"), eps("web", "10.0.0.3", ready=False),
                eps("web", "10.0.0.1", port=9100, name="metrics")]))
    assert t.route("app", "/").backend.endpoints == (("10.0.0.1", 8080), ("10.0.0.2", 8080))
    assert t.route("named", "/").backend.endpoints == (("10.0.0.1", 9100),)
    assert t.problems == []


def test_missing_service_or_endpoints_are_problems():
    t = build_table(cluster([ing("a", [rule("app", ("/", "Prefix", "gone"), ("/e", "Prefix", "empty"))])],
                            services=[service("empty")]))
    assert t.route("app", "/").backend.endpoints == ()
    assert [(p.ingress, p.reason, p.message) for p in t.problems] == [
        ("default/a", "BackendUnavailable", 'service "default/gone" not found'),
        ("default/a", "BackendUnavailable", 'service "default/empty" has no ready endpoints for port 80')]


def test_tls_certificates_by_host_and_wildcard():
    secret = {"type": "kubernetes.io/tls", "data": {"tls.crt": base64.b64encode(b"CERT").decode(),
                                                     "tls.key": base64.b64encode(b"KEY").decode()}}
    t = build_table(cluster(
        [ing("a", [rule("app.local", ("/", "Prefix", "web"))],
             tls=[{"hosts": ["app.local", "*.wild.local"], "secretName": "tls"}, {"secretName": "missing"}])],
        secrets={"default/tls": secret}))
    assert t.cert_for("app.local") == (b"CERT", b"KEY")
    assert t.cert_for("x.wild.local") == (b"CERT", b"KEY")
    assert t.cert_for("other.local") is None
    assert any(p.reason == "InvalidTLSSecret" for p in t.problems)
