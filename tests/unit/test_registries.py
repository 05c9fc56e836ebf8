"""containerd's certs.d for `--insecure-registry` and `--registry-mirror`: rendering, checks, writing."""

from __future__ import annotations

import tomllib

import pytest

from pocketkube.agent.runtime.registries import (
    check_mirror_url,
    check_registry_addr,
    registry_hosts,
    render_mirror_hosts,
    write_registry_hosts,
)


def test_mirrors_come_before_docker_hub_in_order() -> None:
    hosts = tomllib.loads(render_mirror_hosts(["http://127.0.0.1:5000/", "https://mirror.example:8443"]))
    assert hosts["server"] == "https://registry-1.docker.io"
    assert list(hosts["host"]) == ["http://127.0.0.1:5000", "https://mirror.example:8443"]
    assert all(h["capabilities"] == ["pull", "resolve"] for h in hosts["host"].values())


@pytest.mark.parametrize("url", ["127.0.0.1:5000", "ftp://x", "http://", "http:///path", 'http://a"b', "http://a b"])
def test_a_mirror_must_be_an_http_url(url) -> None:
    with pytest.raises(ValueError, match="must be an http:// or https:// URL"):
        check_mirror_url(url)


@pytest.mark.parametrize("addr", ["127.0.0.1", "http://127.0.0.1:5000", "host:port", 'a"b:1'])
def test_an_insecure_registry_must_be_host_port(addr) -> None:
    with pytest.raises(ValueError, match="must be HOST:PORT"):
        check_registry_addr(addr)


def test_registry_hosts_names_one_directory_per_host() -> None:
    files = registry_hosts(["127.0.0.1:5000", "reg.local:80"], ["http://127.0.0.1:5000"])
    assert sorted(files) == ["127.0.0.1:5000", "docker.io", "reg.local:80"]
    assert tomllib.loads(files["reg.local:80"])["server"] == "http://reg.local:80"
    assert registry_hosts() == {}


def test_write_keeps_exactly_the_flags_of_this_run(tmp_path) -> None:
    certs = tmp_path / "certs.d"
    write_registry_hosts(certs, registry_hosts(["127.0.0.1:5000"], ["http://127.0.0.1:5000"]))
    assert sorted(p.name for p in certs.iterdir()) == ["127.0.0.1:5000", "docker.io"]
    write_registry_hosts(certs, registry_hosts(["127.0.0.1:6000"]))
    assert [p.name for p in certs.iterdir()] == ["127.0.0.1:6000"]
    assert "http://127.0.0.1:6000" in (certs / "127.0.0.1:6000" / "hosts.toml").read_text()
