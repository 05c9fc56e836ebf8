"""The mode `up` picks from the doctor's facts, and the one line that says which and why."""

from __future__ import annotations

import pytest

from pocketkube.agent.runtime.select import RuntimeUnavailable
from pocketkube.doctor.facts import Binary, Facts, NftProbe
from pocketkube.doctor.mode import containerd_missing, decide

pytestmark = pytest.mark.unit

ALL = ("bridge", "host-local", "portmap", "loopback")
PROGRAMS = {"containerd": "/usr/bin/containerd", "runc": "/usr/sbin/runc", "nft": "/usr/sbin/nft", "ip": "/usr/sbin/ip"}


def facts(euid=0, drop=(), **over) -> Facts:
    programs = {k: v for k, v in PROGRAMS.items() if k not in drop}
    base = dict(euid=euid, programs=programs, cni_dir="/usr/lib/cni", cni_present=ALL,
                busybox=Binary("/bin/busybox", True), nft=NftProbe(True) if euid == 0 and "nft" in programs else None)
    base.update(over)
    return Facts(**base)


def test_everything_there_as_root_is_containerd_and_nftables():
    m = decide("auto", "auto", facts())
    assert (m.runtime, m.dataplane) == ("containerd", "nftables")
    assert m.line == "runtime containerd, data plane nftables (root; containerd, runc, CNI plugins, nft found)"


def test_not_root_falls_back_to_processes_and_userspace():
    m = decide("auto", "auto", facts(euid=1000))
    assert (m.runtime, m.dataplane) == ("process", "userspace")
    assert m.line == ("runtime process, data plane userspace: not root "
                      "(sudo pocketkube up for real containers; pocketkube doctor tells more)")


def test_no_nft_as_root_falls_back_on_both_and_names_the_package():
    m = decide("auto", "auto", facts(drop=("nft",)))
    assert (m.runtime, m.dataplane) == ("process", "userspace")
    assert m.line == ("runtime process, data plane userspace: no nft "
                      "(apt-get install -y nftables; pocketkube doctor tells more)")


def test_no_containerd_keeps_nftables_for_the_process_runtime():
    m = decide("auto", "auto", facts(drop=("containerd", "runc")))
    assert (m.runtime, m.dataplane) == ("process", "nftables")
    assert m.line == ("runtime process, data plane nftables: no containerd, runc "
                      "(apt-get install -y containerd runc; pocketkube doctor tells more)")


def test_nft_the_kernel_refuses_is_said():
    m = decide("auto", "auto", facts(nft=NftProbe(False, "Operation not supported")))
    # containerd mode's pod network is an nftables table too: both fall back
    assert (m.runtime, m.dataplane) == ("process", "userspace")
    assert m.line == ("runtime process, data plane userspace: nft list tables failed (Operation not supported) "
                      "(pocketkube doctor tells more)")


def test_asked_for_modes_say_so():
    assert decide("process", "auto", facts()).line == "runtime process, data plane nftables (--runtime process)"
    m = decide("auto", "userspace", facts())
    assert m.line == ("runtime containerd, data plane userspace "
                      "(root; containerd, runc, CNI plugins, nft found; --dataplane userspace)")
    m = decide("containerd", "auto", facts(), endpoint="unix:///run/c.sock")
    assert m.line == "runtime containerd, data plane nftables (the CRI runtime at unix:///run/c.sock)"


def test_explicit_containerd_that_cannot_run_names_every_missing_package():
    with pytest.raises(RuntimeUnavailable, match="apt-get install containerd nftables"):
        decide("containerd", "auto", facts(drop=("containerd", "nft")))


def test_containerd_missing_lists_debian_packages():
    assert containerd_missing(facts()) == []
    f = facts(drop=("runc", "ip"), cni_present=("bridge",), busybox=Binary("/bin/busybox", False))
    assert containerd_missing(f) == ["runc", "busybox-static", "containernetworking-plugins", "iproute2"]
