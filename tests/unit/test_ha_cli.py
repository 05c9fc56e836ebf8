"""The HA flags: --leader-elect and its durations (checked as client-go checks them), and
--server lists on the components that talk to the API server."""

from __future__ import annotations

import pytest

from pocketkube.cli import _parser, main

CM = ["controller-manager", "--token-file", "t", "--ca-file", "c"]


def test_leader_elect_defaults_to_true_with_kubes_durations():
    args = _parser().parse_args([*CM, "--server", "https://a:6443"])
    assert args.leader_elect is True
    assert (args.leader_elect_lease_duration, args.leader_elect_renew_deadline,
            args.leader_elect_retry_period) == (15.0, 10.0, 2.0)
    assert _parser().parse_args([*CM, "--server", "https://a:6443", "--leader-elect=false"]).leader_elect is False
    assert _parser().parse_args(["up", "--leader-elect", "false"]).leader_elect is False
    assert _parser().parse_args(["server", "--leader-elect"]).leader_elect is True


def test_bad_durations_are_a_usage_error(capsys):
    with pytest.raises(SystemExit) as e:
        main([*CM, "--server", "https://a:6443", "--leader-elect-renew-deadline", "20"])
    assert e.value.code == 2
    assert "--leader-elect-lease-duration must be greater than --leader-elect-renew-deadline" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["controller-manager", "agent", "dns", "ingress-controller"])
def test_server_lists_are_checked(command, capsys):
    with pytest.raises(SystemExit) as e:
        _parser().parse_args([command, "--server", "https://a:6443,b:6443"])
    assert e.value.code == 2
    assert "argument --server: API server URL 'b:6443': must start with https://" in capsys.readouterr().err
    args = _parser().parse_args([*CM, "--server", "https://a:6443, https://b:6443/"])
    assert args.server == "https://a:6443,https://b:6443"


def test_a_kept_identity_survives_restarts_and_none_is_fresh_each_time(tmp_path):
    from pocketkube.controlplane import _identity

    path = tmp_path / "controlplane-identity"
    first = _identity(str(path))
    assert _identity(str(path)) == first and path.read_text().strip() == first
    assert _identity("") != _identity("")
