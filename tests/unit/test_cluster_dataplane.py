"""`up` resolves the data plane itself in container mode (the userspace one needs the VIP ranges
local on the host: net.hostnet's `local_vips`) and hands the agents the resolved name."""

from pocketkube.cluster import Cluster, UpConfig

RANGES = {"node_ip_base": "10.255.0.0", "pod_cidr_base": "10.249.0.0/16", "service_cidr": "10.101.0.0/16",
          "load_balancer_pool": "10.255.1.0/24"}


def test_container_mode_resolves_the_plane_and_process_mode_passes_it_on(tmp_path, monkeypatch):
    monkeypatch.setattr("pocketkube.cluster.nftables_usable", lambda: False)
    for asked, resolved in (("userspace", "userspace"), ("nftables", "nftables"), ("auto", "userspace")):
        cluster = Cluster(UpConfig(tmp_path, runtime="containerd", dataplane=asked, **RANGES))
        assert cluster.dataplane == resolved
    monkeypatch.setattr("pocketkube.cluster.nftables_usable", lambda: True)
    assert Cluster(UpConfig(tmp_path, runtime="containerd", dataplane="auto", **RANGES)).dataplane == "nftables"
    assert Cluster(UpConfig(tmp_path, dataplane="auto")).dataplane == "auto"  # each agent decides, as before
