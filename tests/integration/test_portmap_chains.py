"""hostPort through the real CNI plugins of our conflist (bridge, host-local, portmap), and the
removal of portmap's shared chains once no sandbox maps a port (net.portmap).

Everything runs inside a network namespace standing in for the host, so the real host's table
`ip nat` (which other clusters' portmap may be using at the same time) is never touched: the
plugins run there as containerd would run them, with each pod in a namespace of its own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import pocketkube
from pocketkube.agent.runtime.cni import render_conflist
from pocketkube.testing.requires import ROOT, is_root, requires

CNI_BIN_DIR = "/usr/lib/cni"
CNI = "the CNI plugins (apt-get install containernetworking-plugins)"
IPTABLES = "iptables (apt-get install iptables)"
have_cni = all(os.access(f"{CNI_BIN_DIR}/{p}", os.X_OK) for p in ("bridge", "host-local", "portmap"))
have_iptables = all(os.access(p, os.X_OK) for p in ("/usr/sbin/iptables", "/usr/sbin/iptables-restore"))
pytestmark = [requires(is_root(), ROOT), requires(have_cni, CNI), requires(have_iptables, IPTABLES)]

SUBNET, GATEWAY, BRIDGE = "10.249.250.0/24", "10.249.250.1", "pkpm0"
POD_PORT = 8080
SHARED = ("CNI-HOSTPORT-DNAT", "CNI-HOSTPORT-SETMARK", "CNI-HOSTPORT-MASQ")
RESPONDER = """
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[2])))
s.listen(8)
while True:
    c, _ = s.accept()
    c.sendall(sys.argv[1].encode())
    c.close()
"""
FETCH = """
import socket, sys
try:
    with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2) as s:
        print(s.recv(100).decode())
except OSError as e:
    print("ERR", type(e).__name__)
"""


def in_netns(netns: str, *argv: str, stdin: str | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", "netns", "exec", netns, *argv], input=stdin, capture_output=True, text=True,
                          env=env, timeout=60, check=False)


class Host:
    """A namespace standing in for the host, and pods in namespaces of their own wired by the
    conflist's plugins, run in order with each result passed on (CNI 1.0.0), as containerd does."""

    def __init__(self, prefix: str, ipam_dir: Path) -> None:
        self.netns = f"{prefix}-host"
        self.prefix = prefix
        self.conflist = json.loads(render_conflist(bridge=BRIDGE, subnet=SUBNET, ipam_dir=ipam_dir))
        self.pods: dict[str, tuple[str, subprocess.Popen | None]] = {}  # name -> (netns, responder)

    def _plugin(self, command: str, conf: dict, pod: str, cid: str) -> dict:
        env = {"CNI_COMMAND": command, "CNI_CONTAINERID": cid, "CNI_NETNS": f"/var/run/netns/{pod}",
               "CNI_IFNAME": "eth0", "CNI_PATH": CNI_BIN_DIR, "PATH": os.environ.get("PATH", "")}
        done = in_netns(self.netns, f"{CNI_BIN_DIR}/{conf['type']}", stdin=json.dumps(conf), env=env)
        assert done.returncode == 0, f"{conf['type']} {command}: {done.stdout}{done.stderr}"
        return json.loads(done.stdout or "{}")

    def _confs(self, host_port: int) -> list[dict]:
        base = {"cniVersion": self.conflist["cniVersion"], "name": self.conflist["name"]}
        runtime = {"portMappings": [{"hostPort": host_port, "containerPort": POD_PORT, "protocol": "tcp"}]}
        return [{**base, **p, **({"runtimeConfig": runtime} if p["type"] == "portmap" else {})}
                for p in self.conflist["plugins"]]

    def add_pod(self, name: str, host_port: int) -> str:
        netns = f"{self.prefix}-{name}"
        subprocess.run(["ip", "netns", "add", netns], check=True)
        self.pods[name] = (netns, None)
        result: dict = {}
        for conf in self._confs(host_port):
            result = self._plugin("ADD", {**conf, **({"prevResult": result} if result else {})}, netns, name)
        pod_ip = result["ips"][0]["address"].split("/")[0]
        responder = subprocess.Popen(["ip", "netns", "exec", netns, sys.executable, "-c", RESPONDER, pod_ip,
                                      str(POD_PORT)], stdout=subprocess.DEVNULL)
        self.pods[name] = (netns, responder)
        return pod_ip

    def del_pod(self, name: str, host_port: int) -> None:
        netns, responder = self.pods.pop(name)
        if responder is not None:
            responder.kill()
            responder.wait()
        for conf in reversed(self._confs(host_port)):
            self._plugin("DEL", conf, netns, name)
        subprocess.run(["ip", "netns", "del", netns], capture_output=True, check=False)

    def fetch(self, addr: str, port: int) -> str:
        return in_netns(self.netns, sys.executable, "-c", FETCH, addr, str(port)).stdout.strip()

    def nat_rules(self) -> list[str]:
        return in_netns(self.netns, "iptables", "-t", "nat", "-S").stdout.splitlines()

    def tables(self) -> list[str]:
        return sorted(in_netns(self.netns, "nft", "list", "tables").stdout.splitlines())

    def remove_idle_chains(self) -> str:
        env = {**os.environ, "PYTHONPATH": str(Path(pocketkube.__file__).parents[1])}
        done = in_netns(self.netns, sys.executable, "-c",
                        "from pocketkube.net.portmap import remove_idle_chains; print(remove_idle_chains())", env=env)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    def close(self) -> None:
        for netns, responder in self.pods.values():
            if responder is not None:
                responder.kill()
                responder.wait()
            subprocess.run(["ip", "netns", "del", netns], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "del", self.netns], capture_output=True, check=False)


@pytest.fixture
def host(tmp_path) -> Iterator[Host]:
    h = Host(f"pkpm{os.getpid()}", tmp_path / "ipam")
    subprocess.run(["ip", "netns", "add", h.netns], check=True)
    in_netns(h.netns, "ip", "link", "set", "lo", "up")
    try:
        yield h
    finally:
        h.close()
    assert not [n for n in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
                if n.startswith(h.prefix)]


def shared_chains(rules: list[str]) -> list[str]:
    return [r for r in rules if any(c in r for c in SHARED)]


def test_host_ports_work_and_the_shared_chains_go_with_the_last_mapping(host):
    a_ip = host.add_pod("a", 18080)
    b_ip = host.add_pod("b", 18081)
    assert host.fetch(GATEWAY, 18080) == a_ip  # the host reaches each pod at a local address:hostPort
    assert host.fetch(GATEWAY, 18081) == b_ip
    assert host.remove_idle_chains().startswith("in use")  # two sandboxes map ports
    host.del_pod("a", 18080)
    before = host.nat_rules()
    assert host.remove_idle_chains().startswith("in use")  # b still does: nothing is touched
    assert host.nat_rules() == before
    assert host.fetch(GATEWAY, 18081) == b_ip
    host.del_pod("b", 18081)
    assert shared_chains(host.nat_rules())  # portmap leaves them behind
    assert host.tables() == ["table ip nat", "table ip6 nat"]  # iptables-nft made them for portmap
    assert host.remove_idle_chains() == "removed"
    assert shared_chains(host.nat_rules()) == []
    assert host.tables() == []  # and they held nothing else
    assert host.remove_idle_chains() == "absent"


def test_a_nat_table_someone_else_uses_stays_with_their_rule(host):
    host.add_pod("a", 18080)
    host.del_pod("a", 18080)
    theirs = "-A POSTROUTING -s 192.0.2.0/24 -j MASQUERADE"
    assert in_netns(host.netns, "iptables", "-t", "nat", *theirs.split()).returncode == 0
    assert host.remove_idle_chains() == "removed"
    assert shared_chains(host.nat_rules()) == []
    assert theirs in host.nat_rules()
    assert host.tables() == ["table ip nat"]  # the empty ip6 one went


def test_a_rule_someone_else_put_in_a_shared_chain_keeps_them_all(host):
    host.add_pod("a", 18080)
    host.del_pod("a", 18080)
    foreign = "-A CNI-HOSTPORT-MASQ -s 192.0.2.0/24 -j MASQUERADE"
    assert in_netns(host.netns, "iptables", "-t", "nat", *foreign.split()).returncode == 0
    before = host.nat_rules()
    assert host.remove_idle_chains().startswith("in use")
    assert host.nat_rules() == before  # all or nothing: not even the jumps went
    assert foreign in before
