"""`pocketkube doctor`'s output: the checklist (colour only on a terminal), JSON, and the exit code."""

from __future__ import annotations

import argparse
import json

import pytest

from pocketkube.doctor import command
from pocketkube.doctor.checks import INFO, MISSING, OK, Check
from pocketkube.doctor.facts import Binary, Facts, NftProbe
from pocketkube.doctor.mode import Mode
from pocketkube.doctor.options import add_arguments
from pocketkube.doctor.report import render_json, render_text

pytestmark = pytest.mark.unit

CHECKS = [Check("root", "running as root", OK, "euid 0"),
          Check("containerd", "containerd", MISSING, "not found on PATH", "pods run as host processes",
                "apt-get install -y containerd", "other distributions: containerd"),
          Check("kubectl", "kubectl on PATH", INFO, "not on PATH", fix="ln -s /venv/bin/kubectl /usr/local/bin/")]
MODE = Mode("process", "nftables", "runtime process, data plane nftables: no containerd (...)")


def test_text_lists_marks_what_is_disabled_and_the_fix():
    out = render_text(CHECKS, MODE)
    assert out.splitlines()[:6] == [
        "✓ running as root: euid 0",
        "✗ containerd: not found on PATH",
        "    without it: pods run as host processes",
        "    fix: apt-get install -y containerd",
        "         other distributions: containerd",
        "– kubectl on PATH: not on PATH",
    ]
    assert "pocketkube up would run: runtime process, data plane nftables: no containerd (...)" in out
    assert "1 missing: see the fixes above." in out and "\x1b[" not in out


def test_colour_only_on_a_terminal():
    out = render_text(CHECKS, MODE, tty=True)
    assert "\x1b[32m✓\x1b[0m running as root" in out and "\x1b[31m✗\x1b[0m containerd" in out


def test_all_ok_says_so():
    assert "Everything the full mode needs is here." in render_text(CHECKS[:1], MODE)


def test_json_for_tools():
    doc = json.loads(render_json(CHECKS, MODE))
    assert doc["ok"] is False and doc["mode"] == {"runtime": "process", "dataplane": "nftables", "why": MODE.line}
    assert doc["checks"][1] == {"id": "containerd", "title": "containerd", "status": "missing",
                                "detail": "not found on PATH", "disables": "pods run as host processes",
                                "fix": "apt-get install -y containerd", "other": "other distributions: containerd"}


def test_flags_reject_bad_ports():
    p = argparse.ArgumentParser()
    add_arguments(p)
    assert p.parse_args(["--port", "7443", "-o", "json"]).port == 7443
    with pytest.raises(SystemExit):
        p.parse_args(["--ingress-http-port", "70000"])


def test_run_prints_and_exits_by_the_verdict(monkeypatch, capsys, tmp_path):
    complete = Facts(euid=0, programs={"containerd": "/c", "runc": "/r", "nft": "/n", "ip": "/i", "kubectl": "/k"},
                     cni_dir="/usr/lib/cni", cni_present=("bridge", "host-local", "portmap", "loopback"),
                     busybox=Binary("/bin/busybox", True), nginx="/usr/sbin/nginx", nft=NftProbe(True))
    monkeypatch.setattr(command, "gather", lambda full: complete)
    p = argparse.ArgumentParser()
    add_arguments(p)
    assert command.run(p.parse_args([]), tmp_path) == 0
    assert "runtime containerd, data plane nftables" in capsys.readouterr().out
    monkeypatch.setattr(command, "gather", lambda full: Facts(euid=1000))
    assert command.run(p.parse_args(["-o", "json"]), tmp_path) == 1
    assert json.loads(capsys.readouterr().out)["mode"]["runtime"] == "process"
