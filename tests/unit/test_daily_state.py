"""State files, stale detection, the status table, logs and kubeconfig contexts of named clusters."""

import io
import os
import subprocess
import sys
import time

import pytest
import yaml

from pocketkube.cluster import merge_user_kubeconfig
from pocketkube.clusters import lifecycle, logs, state, status
from pocketkube.clusters.cli import kubectl_args


def test_state_of_this_process_is_alive_and_a_dead_or_reused_pid_is_not(tmp_path):
    mine = state.my_state("dev", "process", "nftables", 3, "127.0.0.1", 6444)
    state.write_state(tmp_path, mine)
    assert state.read_state(tmp_path) == mine and state.alive(mine)
    reused = state.UpState(**{**mine.__dict__, "start_ticks": mine.start_ticks + 1})
    assert not state.alive(reused)  # the pid now belongs to another program
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert not state.alive(state.UpState(**{**mine.__dict__, "pid": child.pid}))
    state.remove_state(tmp_path, pid=os.getpid() + 1)  # not ours: kept
    assert state.read_state(tmp_path) == mine
    state.remove_state(tmp_path, pid=os.getpid())
    assert state.read_state(tmp_path) is None
    (tmp_path / state.STATE_FILE).write_text("{not json")
    assert state.read_state(tmp_path) is None


def test_stale_state_is_cleaned_and_said(tmp_path, capsys):
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    dead = state.UpState(child.pid, 1, time.time(), "dev", "process", "nftables", 1, "127.0.0.1", 0)
    state.write_state(tmp_path, dead)
    assert lifecycle.clean_if_stale("dev", tmp_path) is None
    assert not (tmp_path / state.STATE_FILE).exists()
    assert "is gone; removed the stale state" in capsys.readouterr().err


@pytest.mark.parametrize("seconds,text", [(5, "5s"), (119, "119s"), (130, "2m10s"), (600, "10m"),
                                          (3 * 3600, "3h"), (3 * 3600 + 60, "3h1m"), (50 * 3600, "2d2h"),
                                          (10 * 86400, "10d"), (800 * 86400, "2y70d")])
def test_uptime_as_kubectl_ages(seconds, text):
    assert status.human_duration(seconds) == text


def test_ready_count_and_table():
    nodes = {"items": [{"status": {"conditions": [{"type": "Ready", "status": "True"}]}},
                       {"status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}}, {}]}
    assert status.ready_count(nodes) == (1, 3)
    table = status.render([status.Row("dev", "Running", "https://127.0.0.1:6444", "3/3", "process", "nftables",
                                      "5m"), status.Row("pocketkube", "Stopped", "-", "-", "-", "-", "-")])
    lines = table.splitlines()
    assert lines[0].split() == list(status.COLUMNS)
    assert lines[1].split() == ["dev", "Running", "https://127.0.0.1:6444", "3/3", "process", "nftables", "5m"]
    assert lines[0].index("STATE") == lines[2].index("Stopped")


def test_logs_lists_components_and_rejects_unknown_ones(tmp_path, capsys):
    for c in ("server", "node-10", "node-2", "controller-manager", "up"):
        (tmp_path / f"{c}.log").write_text(f"{c} line\n")
    assert logs.components(tmp_path) == ["server", "controller-manager", "up", "node-2", "node-10"]
    assert logs.show(tmp_path, "bogus", False) == 1
    assert "valid: server, controller-manager, up, node-2, node-10" in capsys.readouterr().err
    out = io.StringIO()
    assert logs.show(tmp_path, "node-2", False, out=out) == 0 and out.getvalue() == "node-2 line\n"
    assert "no logs yet" in logs.component_problem("server", [])


def test_named_context_is_merged_and_removed_leaving_others(tmp_path):
    data = tmp_path / "kubeconfig"
    data.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "pocketkube",
        "clusters": [{"name": "pocketkube", "cluster": {"server": "https://127.0.0.1:6444"}}],
        "users": [{"name": "pocketkube-admin", "user": {"token": "t"}}],
        "contexts": [{"name": "pocketkube", "context": {"cluster": "pocketkube", "user": "pocketkube-admin"}}]}))
    user = tmp_path / "home" / "config"
    merge_user_kubeconfig(data, user)
    merge_user_kubeconfig(data, user, context="pocketkube-dev")
    cfg = yaml.safe_load(user.read_text())
    assert [c["name"] for c in cfg["contexts"]] == ["pocketkube", "pocketkube-dev"]
    assert cfg["contexts"][1]["context"] == {"cluster": "pocketkube-dev", "user": "pocketkube-dev-admin"}
    assert cfg["current-context"] == "pocketkube"
    assert lifecycle.remove_user_context("pocketkube-dev", user)
    assert not lifecycle.remove_user_context("pocketkube-dev", user)
    cfg = yaml.safe_load(user.read_text())
    assert [c["name"] for c in cfg["clusters"]] == ["pocketkube"] and cfg["current-context"] == "pocketkube"
    assert lifecycle.remove_user_context("pocketkube", user)
    assert yaml.safe_load(user.read_text())["current-context"] == ""


def test_kubectl_name_is_the_clusters_data_dir(tmp_path):
    default = tmp_path / "pk"
    assert kubectl_args(["--name", "dev", "get", "pods"], default) == ["--data-dir", str(tmp_path / "pk-dev"),
                                                                       "get", "pods"]
    assert kubectl_args(["--name=pocketkube", "get"], default) == ["--data-dir", str(default), "get"]
    assert kubectl_args(["get", "--name", "x"], default) == ["get", "--name", "x"]
    with pytest.raises(ValueError, match="RFC 1123"):
        kubectl_args(["--name", "Bad"], default)


def test_a_default_cluster_from_before_plans_holds_slot_zero(tmp_path):
    default = tmp_path / "pk"
    default.mkdir()
    (default / "kubeconfig").write_text("")
    (held,) = lifecycle.others(default, tmp_path / "pk-dev")
    assert held.name == "pocketkube" and held.slot == 0


def test_plans_are_recorded_and_the_next_cluster_avoids_them(tmp_path, monkeypatch):
    monkeypatch.setattr(lifecycle, "port_free", lambda port, host: True)
    default = tmp_path / "pk"
    first = lifecycle.choose_and_record("pocketkube", default, default, "process", {}, "127.0.0.1")
    second = lifecycle.choose_and_record("dev", tmp_path / "pk-dev", default, "process", {}, "127.0.0.1")
    assert first["port"] == 6443 and second["port"] == 6444 and second["node_ip_base"] == "127.0.2.0"
    assert state.read_plan(tmp_path / "pk-dev")["slot"] == 1
    # The same cluster comes back on its slot, in either runtime.
    again = lifecycle.choose_and_record("dev", tmp_path / "pk-dev", default, "containerd", {}, "127.0.0.1")
    assert again["port"] == 6444 and again["node_ip_base"] == "10.250.2.0"


def test_two_container_clusters_never_share_bridge_names(tmp_path, monkeypatch):
    monkeypatch.setattr(lifecycle, "port_free", lambda port, host: True)
    monkeypatch.setattr("pocketkube.net.addresses.cluster_id", lambda path: "abcd")
    default = tmp_path / "pk"
    lifecycle.choose_and_record("pocketkube", default, default, "process", {}, "127.0.0.1")
    with pytest.raises(ValueError, match="same host network id"):
        lifecycle.choose_and_record("dev", tmp_path / "pk-dev", default, "containerd", {}, "127.0.0.1")
