"""`--runtime auto|containerd|process`: the pure choice and its reasons."""

from __future__ import annotations

import pytest

from pocketkube.agent.runtime.select import RuntimeUnavailable, choose_runtime


def test_auto_as_root_with_everything_installed_picks_containerd():
    choice = choose_runtime("auto", euid=0, missing=[])
    assert choice.name == "containerd" and "root" in choice.why


def test_auto_without_root_falls_back_to_processes_and_says_why():
    choice = choose_runtime("auto", euid=1000, missing=[])
    assert choice.name == "process" and "not root" in choice.why


def test_auto_with_missing_packages_names_them():
    choice = choose_runtime("auto", euid=0, missing=["containerd", "runc"])
    assert choice.name == "process"
    assert "apt-get install containerd runc" in choice.why


def test_explicit_containerd_fails_clearly_when_it_cannot_run():
    with pytest.raises(RuntimeUnavailable, match="needs root"):
        choose_runtime("containerd", euid=1000, missing=[])
    with pytest.raises(RuntimeUnavailable, match="busybox-static"):
        choose_runtime("containerd", euid=0, missing=["busybox-static"])


def test_an_external_endpoint_needs_no_local_packages_but_root():
    choice = choose_runtime("auto", euid=0, missing=["containerd"], endpoint="unix:///run/c.sock")
    assert choice.name == "containerd" and "unix:///run/c.sock" in choice.why
    with pytest.raises(RuntimeUnavailable, match="needs --runtime containerd"):
        choose_runtime("process", euid=0, missing=[], endpoint="unix:///run/c.sock")


def test_process_is_always_available():
    assert choose_runtime("process", euid=1000, missing=["containerd"]).name == "process"


def test_unknown_runtime_is_rejected():
    with pytest.raises(ValueError, match="choose one of"):
        choose_runtime("docker", euid=0, missing=[])


@pytest.mark.parametrize("endpoint", ["/run/c.sock", "tcp://127.0.0.1:1", "unix://relative.sock"])
def test_an_endpoint_must_be_a_unix_url(endpoint):
    with pytest.raises(RuntimeUnavailable, match=r"must be unix:///<absolute socket path>"):
        choose_runtime("containerd", euid=0, missing=[], endpoint=endpoint)
