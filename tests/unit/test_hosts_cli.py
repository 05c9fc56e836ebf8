"""Bad node IPAM and host-gw flags: argparse errors or a one-line message, exit 2, no traceback."""

from __future__ import annotations

import pytest

from pocketkube import cli

CM = ["controller-manager", "--server", "https://127.0.0.1:6443", "--token-file", "/dev/null", "--ca-file", "/dev/null"]
AGENT = ["agent", "--server", "https://127.0.0.1:6443", "--token-file", "/dev/null", "--ca-file", "/dev/null",
         "--node-name", "h1", "--node-ip", "10.251.0.11", "--data-dir", "/tmp/x"]


@pytest.mark.parametrize("argv, message", [
    ([*CM, "--cluster-cidr", "10.252.0.1/16"], "has host bits set"),
    ([*CM, "--cluster-cidr", "bogus"], "is not a CIDR"),
    ([*CM, "--cluster-cidr", "fd00::/48"], "only IPv4"),
    ([*AGENT, "--pod-cidr", "10.252.1.1/24"], "has host bits set"),
    ([*AGENT, "--routes", "vxlan"], "invalid choice: 'vxlan'"),
])
def test_bad_flags_are_usage_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_mask_size_outside_the_cluster_cidr(capsys):
    assert cli.main([*CM, "--cluster-cidr", "10.252.0.0/16", "--node-cidr-mask-size", "12"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pocketkube: --node-cidr-mask-size: node CIDR mask size 12 must be between")
    assert "Traceback" not in err


def test_the_printed_join_command_parses_and_asks_for_host_gw_routes():
    """What `up`/`server` print for other hosts is a command the agent's parser takes as is
    (placeholders filled in), without --pod-cidr (node IPAM gives it) and with host-gw routes."""
    from pocketkube.join_cli import join_command

    line = join_command("https://192.0.2.1:6443", "K10" + "0" * 64 + "::abcdef.0123456789abcdef")
    argv = line.replace("NAME", "h2").replace(" IP ", " 192.0.2.2 ").replace("DIR", "/tmp/x").split()[1:]
    args = cli._parser().parse_args(argv)
    assert (args.routes, args.pod_cidr, args.node_name) == ("host-gw", "", "h2")
