"""render_config: valid TOML, every path under the agent's data directory, no TCP listener but
the loopback streaming server; and the pure helpers stop() uses to find shims and mounts."""

from __future__ import annotations

import tomllib

import pytest

from pocketkube.agent.runtime.containerd import (
    Containerd,
    containerd_pids,
    mounts_under,
    render_config,
    render_plain_http_hosts,
    shim_pids,
)

DATA = "/var/lib/pk/node-1"


def _render(**overrides) -> str:
    args = dict(root=f"{DATA}/root", state=f"{DATA}/state", socket=f"{DATA}/containerd.sock",
                cni_bin_dir="/usr/lib/cni", cni_conf_dir=f"{DATA}/cni/net.d",
                sandbox_image="127.0.0.1:5000/pause:3.9")
    return render_config(**(args | overrides))


def _strings(value, path=""):
    """Every (dotted path, string) in a parsed TOML document."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, f"{path}.{key}" if path else key)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item, path)
    elif isinstance(value, str):
        yield path, value


def test_config_is_toml_with_every_path_under_the_data_dir() -> None:
    config = tomllib.loads(_render())
    cri = config["plugins"]["io.containerd.grpc.v1.cri"]
    assert config["version"] == 2
    assert config["grpc"]["address"] == f"{DATA}/containerd.sock"
    assert config["ttrpc"]["address"] == f"{DATA}/containerd.sock.ttrpc"
    assert cri["sandbox_image"] == "127.0.0.1:5000/pause:3.9"
    assert cri["cni"] == {"bin_dir": "/usr/lib/cni", "conf_dir": f"{DATA}/cni/net.d"}
    assert cri["containerd"]["snapshotter"] == "overlayfs"
    assert cri["containerd"]["runtimes"]["runc"]["options"]["SystemdCgroup"] is False
    assert cri["netns_mounts_under_state_dir"] is True and cri["restrict_oom_score_adj"] is True
    paths = {where: s for where, s in _strings(config) if s.startswith("/")}
    assert {"root", "state", "plugins.io.containerd.internal.v1.opt.path",
            "plugins.io.containerd.grpc.v1.cri.containerd.runtimes.runc.options.Root"} <= set(paths)
    outside = {w: p for w, p in paths.items() if not p.startswith(DATA + "/") and p != "/usr/lib/cni"}
    assert outside == {}


def test_no_tcp_listener_but_the_loopback_stream_server_on_a_random_port() -> None:
    config = tomllib.loads(_render())
    cri = config["plugins"]["io.containerd.grpc.v1.cri"]
    assert (cri["stream_server_address"], cri["stream_server_port"]) == ("127.0.0.1", "0")
    assert cri["enable_tls_streaming"] is False
    assert config["debug"]["address"] == "" and config["metrics"]["address"] == ""
    # Every other address is a unix socket under the data dir.
    addresses = {w: s for w, s in _strings(config) if w.endswith("address") and s}
    del addresses["plugins.io.containerd.grpc.v1.cri.stream_server_address"]
    assert addresses and all(s.startswith(DATA + "/") for s in addresses.values()), addresses


def test_optional_registry_config_and_quoting() -> None:
    odd = '/tmp/a "quoted" dir\\x'
    config = tomllib.loads(_render(root=odd, registry_config_dir=f"{DATA}/certs.d"))
    assert config["root"] == odd
    assert config["plugins"]["io.containerd.grpc.v1.cri"]["registry"]["config_path"] == f"{DATA}/certs.d"
    assert "registry" not in tomllib.loads(_render())["plugins"]["io.containerd.grpc.v1.cri"]


@pytest.mark.parametrize("overrides, match", [
    ({"root": "relative/root"}, "root directory must be an absolute path"),
    ({"cni_conf_dir": "net.d"}, "CNI conf directory must be an absolute path"),
    ({"socket": "/" + "s" * 120}, "too long for a unix socket"),
    ({"sandbox_image": ""}, "sandbox image"),
])
def test_bad_input_names_what_to_fix(overrides, match) -> None:
    with pytest.raises(ValueError, match=match):
        _render(**overrides)


def test_containerd_keeps_everything_under_its_data_dir(tmp_path) -> None:
    ctrd = Containerd(tmp_path / "ctrd", sandbox_image="pause:3.9")
    assert ctrd.endpoint == f"unix://{tmp_path}/ctrd/containerd.sock"
    config = tomllib.loads(ctrd.config)
    assert config["root"] == str(tmp_path / "ctrd" / "root")
    assert config["plugins"]["io.containerd.grpc.v1.cri"]["cni"]["conf_dir"] == str(tmp_path / "ctrd/cni/net.d")
    assert not (tmp_path / "ctrd").exists()  # nothing is written before start()


def test_containerd_passes_its_registry_config_dir(tmp_path) -> None:
    ctrd = Containerd(tmp_path, sandbox_image="pause:3.9", registry_config_dir=tmp_path / "certs.d")
    cri = tomllib.loads(ctrd.config)["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["registry"]["config_path"] == str(tmp_path / "certs.d")


def test_plain_http_hosts_toml() -> None:
    hosts = tomllib.loads(render_plain_http_hosts("127.0.0.1:5000"))
    assert hosts == {"server": "http://127.0.0.1:5000",
                     "host": {"http://127.0.0.1:5000": {"capabilities": ["pull", "resolve"]}}}


@pytest.mark.parametrize("addr", ["127.0.0.1", "http://127.0.0.1:5000", ":5000", "a b:1", "h:port"])
def test_plain_http_hosts_rejects_what_is_not_host_port(addr) -> None:
    with pytest.raises(ValueError, match="must be HOST:PORT"):
        render_plain_http_hosts(addr)


def test_shim_pids_match_our_socket_only() -> None:
    sock = f"{DATA}/containerd.sock"
    procs = [
        (10, ["/usr/bin/containerd-shim-runc-v2", "-namespace", "k8s.io", "-id", "a", "-address", sock]),
        (11, ["/usr/bin/containerd-shim-runc-v2", "-namespace", "k8s.io", "-id", "b", "-address",
              "/run/containerd/containerd.sock"]),
        (12, ["containerd", "--config", f"{DATA}/config.toml", "-address", sock]),
        (13, []),  # a zombie or kernel thread
    ]
    assert shim_pids(procs, sock) == [10]


def test_containerd_pids_match_our_config_only() -> None:
    procs = [
        (12, ["/usr/bin/containerd", "--config", f"{DATA}/config.toml"]),
        (13, ["containerd", "--config", "/other/config.toml"]),
        (14, ["/usr/bin/containerd-shim-runc-v2", "--config", f"{DATA}/config.toml"]),
        (15, ["containerd", "--config"]),  # truncated argv: no value to compare
        (16, []),
    ]
    assert containerd_pids(procs, f"{DATA}/config.toml") == [12]


def test_mounts_under_are_deepest_first_and_exact() -> None:
    mountinfo = "\n".join([
        "22 1 0:21 / / rw - ext4 /dev/sda1 rw",
        f"30 22 0:40 / {DATA}/state rw - tmpfs tmpfs rw",
        f"31 30 0:41 / {DATA}/state/io.containerd.runtime.v2.task/k8s.io/abc/rootfs rw - overlay overlay rw",
        f"32 30 0:42 / {DATA}/root/with\\040space rw - tmpfs shm rw",
        f"33 22 0:43 / {DATA}/root2 rw - tmpfs tmpfs rw",  # a sibling, not under root
    ])
    assert mounts_under(mountinfo, [f"{DATA}/root", f"{DATA}/state/"]) == [
        f"{DATA}/state/io.containerd.runtime.v2.task/k8s.io/abc/rootfs",
        f"{DATA}/root/with space",
        f"{DATA}/state",
    ]
