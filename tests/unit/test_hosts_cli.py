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
