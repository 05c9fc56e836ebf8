"""The kubelet's CRI translation (agent/runtime/cri/translate.py) and the CNI conflist
(agent/runtime/cni.py): pure functions, no containerd."""

from __future__ import annotations

import json
from fractions import Fraction

import pytest

from pocketkube.agent.runtime import cni
from pocketkube.agent.runtime.cri import translate as t
from pocketkube.agent.runtime.cri.runtime import cgroup_dirs, remove_cgroup
from pocketkube.agent.runtime.cri.v1 import api_pb2 as api
from pocketkube.agent.runtime.interface import ContainerConfig, InvalidImageName

UID = "0f4c2d4e-1111-2222-3333-444455556666"


def pod(**spec) -> dict:
    meta = spec.pop("metadata", {})
    return {"metadata": {"name": "web", "namespace": "shop", "uid": UID, "labels": {"app": "web"},
                         "annotations": {"note": "x"}, **meta},
            "spec": {"containers": [{"name": "c", "image": "busybox"}], **spec}}


def sandbox(p: dict, **kw) -> api.PodSandboxConfig:
    return t.sandbox_config(p, log_directory="/data/pods/" + UID, cgroup_parent=f"/pocketkube/n1/pod{UID}", **kw)


# ---- image references ----------------------------------------------------------------------

@pytest.mark.parametrize(("ref", "normalized"), [
    ("nginx", "docker.io/library/nginx:latest"),
    ("nginx:1.25", "docker.io/library/nginx:1.25"),
    ("library/nginx", "docker.io/library/nginx:latest"),
    ("bitnami/redis:7", "docker.io/bitnami/redis:7"),
    ("docker.io/nginx", "docker.io/library/nginx:latest"),
    ("index.docker.io/nginx", "docker.io/library/nginx:latest"),
    ("localhost/app", "localhost/app:latest"),
    ("127.0.0.1:5000/busybox:latest", "127.0.0.1:5000/busybox:latest"),
    ("registry.k8s.io/pause:3.9", "registry.k8s.io/pause:3.9"),
    ("nginx@sha256:" + "a" * 64, "docker.io/library/nginx@sha256:" + "a" * 64),
    ("nginx:1.25@sha256:" + "b" * 64, "docker.io/library/nginx:1.25@sha256:" + "b" * 64),
    ("my-org/my_app.v2__x", "docker.io/my-org/my_app.v2__x:latest"),
])
def test_normalize_image_as_docker_does(ref: str, normalized: str) -> None:
    assert t.normalize_image(ref) == normalized


@pytest.mark.parametrize(("ref", "why"), [
    ("", "invalid reference format"),
    ("Nginx", "must be lowercase"),
    ("nginx:", "invalid reference format"),
    ("nginx latest", "invalid reference format"),
    ("-nginx", "invalid reference format"),
    ("nginx:tag:more", "invalid reference format"),
    ("nginx@sha256:short", "invalid reference format"),
    ("a" * 64, "cannot specify 64-byte hexadecimal strings"),
    ("x/" + "a" * 260, "must not be more than 255 characters"),
])
def test_invalid_image_names(ref: str, why: str) -> None:
    with pytest.raises(InvalidImageName, match=why) as err:
        t.normalize_image(ref)
    assert str(err.value).startswith(f'couldn\'t parse image reference "{ref}"')


def test_image_id_prefers_the_repo_digest() -> None:
    assert t.image_id(api.Image(id="sha256:1", repo_digests=["r/x@sha256:2"])) == "r/x@sha256:2"
    assert t.image_id(api.Image(id="sha256:1")) == "sha256:1"


@pytest.mark.parametrize(("message", "unreachable"), [
    ('failed to pull and unpack image "127.0.0.1:1/x:latest": failed to resolve reference "127.0.0.1:1/x:latest": '
     'failed to do request: Head "http://127.0.0.1:1/v2/x/manifests/latest": dial tcp 127.0.0.1:1: connect: '
     'connection refused', True),
    ('failed to resolve reference "docker.io/library/nginx:latest": failed to do request: Head '
     '"https://registry-1.docker.io/v2/library/nginx/manifests/latest": dial tcp: lookup registry-1.docker.io on '
     '10.0.0.1:53: no such host', True),
    ("dial tcp 1.2.3.4:443: i/o timeout", True),
    ("connect: no route to host", True),
    ("connect: network is unreachable", True),
    ('failed to pull and unpack image "127.0.0.1:5000/busybox:nope": failed to resolve reference '
     '"127.0.0.1:5000/busybox:nope": 127.0.0.1:5000/busybox:nope: not found', False),
    ('pulling from host ghcr.io failed with status code [manifests latest]: 401 Unauthorized', False),
    ("http: server gave HTTP response to HTTPS client", False),
    ("something else entirely", False),
    ('failed to do request: Head "http://127.0.0.1:401/v2/x/manifests/sha256:4010401": dial tcp 127.0.0.1:401: '
     "connect: connection refused", True),
    ("unexpected status code [manifests 1]: 403 Forbidden", False),
])
def test_pull_failures_are_classified(message: str, unreachable: bool) -> None:
    assert t.pull_unreachable(message) is unreachable


def test_grpc_error_text_as_go_prints_it() -> None:
    assert t.grpc_error_text("NOT_FOUND", "m") == "rpc error: code = NotFound desc = m"
    assert t.grpc_error_text("UNKNOWN", "m") == "rpc error: code = Unknown desc = m"


# ---- quantities and resources --------------------------------------------------------------

@pytest.mark.parametrize(("value", "expected"), [
    ("500m", Fraction(1, 2)), ("2", 2), (2, 2), ("1.5", Fraction(3, 2)), ("128Mi", 128 * 2**20),
    ("1G", 10**9), ("1e3", 1000), ("1E-3", Fraction(1, 1000)), ("100k", 100_000), (".5", Fraction(1, 2)),
])
def test_parse_quantity(value, expected) -> None:
    assert t.parse_quantity(value) == expected


@pytest.mark.parametrize("value", ["", "abc", "1Qi", "1.2.3", "--1"])
def test_parse_quantity_rejects(value) -> None:
    with pytest.raises(t.ConfigError, match="invalid quantity"):
        t.parse_quantity(value)


def test_resources_from_limits_and_requests() -> None:
    r = t.linux_resources({"resources": {"limits": {"cpu": "500m", "memory": "64Mi"}}})
    assert (r.cpu_period, r.cpu_quota, r.cpu_shares, r.memory_limit_in_bytes) == (100_000, 50_000, 512, 64 * 2**20)
    r = t.linux_resources({"resources": {"requests": {"cpu": "250m"}, "limits": {"cpu": "1m"}}})
    assert (r.cpu_shares, r.cpu_quota) == (256, 1000)  # the quota's floor is 1 ms per period
    r = t.linux_resources({})
    assert (r.cpu_shares, r.cpu_quota, r.memory_limit_in_bytes) == (2, 0, 0)  # best effort: minimum shares


# ---- sandbox -------------------------------------------------------------------------------

def test_sandbox_config_metadata_labels_and_paths() -> None:
    c = sandbox(pod(), attempt=2)
    assert (c.metadata.name, c.metadata.uid, c.metadata.namespace, c.metadata.attempt) == ("web", UID, "shop", 2)
    assert c.hostname == "web" and c.log_directory == f"/data/pods/{UID}"
    assert dict(c.labels) == {"app": "web", t.POD_NAME: "web", t.POD_NAMESPACE: "shop", t.POD_UID: UID}
    assert dict(c.annotations) == {"note": "x"}
    assert c.linux.cgroup_parent == f"/pocketkube/n1/pod{UID}"
    ns = c.linux.security_context.namespace_options
    assert (ns.network, ns.pid, ns.ipc) == (api.POD, api.CONTAINER, api.POD)
    assert not c.linux.security_context.HasField("run_as_user")
    assert not c.linux.security_context.HasField("seccomp")  # unconfined, the kubelet's default


def test_sandbox_config_host_network_and_namespaces() -> None:
    c = sandbox(pod(hostNetwork=True, shareProcessNamespace=True, hostIPC=True))
    assert c.hostname == ""  # runc refuses a hostname without a UTS namespace
    ns = c.linux.security_context.namespace_options
    assert (ns.network, ns.pid, ns.ipc) == (api.NODE, api.POD, api.NODE)
    assert sandbox(pod(hostPID=True)).linux.security_context.namespace_options.pid == api.NODE


def test_sandbox_hostname_from_spec_and_truncated() -> None:
    assert sandbox(pod(hostname="db-0")).hostname == "db-0"
    long = pod(metadata={"name": "a" * 62 + "-b" * 5})
    assert sandbox(long).hostname == "a" * 62


def test_sandbox_security_context_and_sysctls() -> None:
    p = pod(securityContext={"runAsUser": 1000, "runAsGroup": 3000, "supplementalGroups": [4, 5], "fsGroup": 2000,
                             "sysctls": [{"name": "net.ipv4.ip_unprivileged_port_start", "value": "0"}],
                             "seccompProfile": {"type": "RuntimeDefault"}},
            containers=[{"name": "c", "securityContext": {"privileged": True}}])
    sc = sandbox(p).linux.security_context
    assert (sc.run_as_user.value, sc.run_as_group.value, list(sc.supplemental_groups)) == (1000, 3000, [4, 5, 2000])
    assert sc.privileged  # containerd refuses a privileged container in an unprivileged sandbox
    assert sc.seccomp.profile_type == api.SecurityProfile.RuntimeDefault
    assert dict(sandbox(p).linux.sysctls) == {"net.ipv4.ip_unprivileged_port_start": "0"}
    with pytest.raises(t.ConfigError, match="seccomp"):
        sandbox(pod(securityContext={"seccompProfile": {"type": "Localhost", "localhostProfile": "x.json"}}))


def test_port_mappings_from_host_ports() -> None:
    p = pod(containers=[{"name": "a", "ports": [{"containerPort": 80, "hostPort": 8080},
                                                {"containerPort": 53, "hostPort": 5353, "protocol": "UDP",
                                                 "hostIP": "127.0.0.1"},
                                                {"containerPort": 9000}]}])
    got = [(m.protocol, m.container_port, m.host_port, m.host_ip) for m in sandbox(p).port_mappings]
    assert got == [(api.TCP, 80, 8080, ""), (api.UDP, 53, 5353, "127.0.0.1")]
    # On a node sharing the host with others, an unset hostIP is the node's own IP.
    got = [(m.host_port, m.host_ip) for m in sandbox(p, node_ip="10.250.0.2").port_mappings]
    assert got == [(8080, "10.250.0.2"), (5353, "127.0.0.1")]


HOST = t.ResolvConf(servers=("127.0.0.53", "10.0.0.2", "::1"), searches=("corp.example",), options=("edns0",))


def test_dns_default_policy_uses_the_host_without_loopback_servers() -> None:
    d = t.dns_config(pod(dnsPolicy="Default"), host=HOST)
    assert (list(d.servers), list(d.searches), list(d.options)) == (["10.0.0.2"], ["corp.example"], ["edns0"])


def test_dns_cluster_first() -> None:
    d = t.dns_config(pod(), host=HOST, cluster_dns=["10.96.0.10"])
    assert list(d.servers) == ["10.96.0.10"]
    assert list(d.searches) == ["shop.svc.cluster.local", "svc.cluster.local", "cluster.local", "corp.example"]
    assert list(d.options) == ["ndots:5"]
    # Without cluster DNS, the kubelet's fallback: Default.
    assert list(t.dns_config(pod(), host=HOST).servers) == ["10.0.0.2"]
    # A host-network pod gets cluster DNS only with ClusterFirstWithHostNet.
    assert list(t.dns_config(pod(hostNetwork=True), host=HOST, cluster_dns=["10.96.0.10"]).servers) == ["10.0.0.2"]
    d = t.dns_config(pod(hostNetwork=True, dnsPolicy="ClusterFirstWithHostNet"), host=HOST, cluster_dns=["10.96.0.10"])
    assert list(d.servers) == ["10.96.0.10"]


def test_dns_none_and_custom_config() -> None:
    custom = {"nameservers": ["1.2.3.4"], "searches": ["a.example"],
              "options": [{"name": "ndots", "value": "2"}, {"name": "single-request"}]}
    d = t.dns_config(pod(dnsPolicy="None", dnsConfig=custom), host=HOST)
    assert (list(d.servers), list(d.searches), list(d.options)) == (["1.2.3.4"], ["a.example"], ["ndots:2", "single-request"])
    d = t.dns_config(pod(dnsConfig=custom), host=HOST, cluster_dns=["10.96.0.10"])
    assert list(d.servers) == ["10.96.0.10", "1.2.3.4"] and list(d.options) == ["ndots:2", "single-request"]
    # An empty config is still a config: containerd writes an empty resolv.conf rather than the host's.
    c = sandbox(pod(dnsPolicy="None"))
    assert c.HasField("dns_config") and not c.dns_config.servers
    with pytest.raises(t.ConfigError, match="dnsPolicy"):
        t.dns_config(pod(dnsPolicy="Bogus"), host=HOST)


def test_parse_resolv_conf() -> None:
    text = "# c\nnameserver 10.0.0.2\nsearch a.example b.example\noptions ndots:2 edns0\nnameserver 10.0.0.3 ; x\n"
    assert t.parse_resolv_conf(text) == t.ResolvConf(("10.0.0.2", "10.0.0.3"), ("a.example", "b.example"),
                                                     ("ndots:2", "edns0"))


def test_etc_hosts() -> None:
    text = t.etc_hosts(pod(hostAliases=[{"ip": "10.1.1.1", "hostnames": ["foo", "bar"]}]), "10.244.1.5")
    assert text.startswith("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n")
    assert "10.244.1.5\tweb\n" in text and text.endswith("# Entries added by HostAliases.\n10.1.1.1\tfoo\tbar\n")
    text = t.etc_hosts(pod(hostname="db-0", subdomain="db"), "10.244.1.6")
    assert "10.244.1.6\tdb-0.db.shop.svc.cluster.local\tdb-0\n" in text
    text = t.etc_hosts(pod(hostNetwork=True), "10.250.0.1", host_file="127.0.0.1 localhost\n1.2.3.4 node")
    assert text == "# Kubernetes-managed hosts file (host network).\n127.0.0.1 localhost\n1.2.3.4 node\n"


def test_cgroup_parent_rejects_path_tricks() -> None:
    assert t.cgroup_parent("/pocketkube/", "n1", UID) == f"/pocketkube/n1/pod{UID}"
    for node, uid in (("../x", UID), ("n1", "a/b"), ("", UID), ("n1", "")):
        with pytest.raises(t.ConfigError):
            t.cgroup_parent("/pocketkube", node, uid)


# ---- containers ----------------------------------------------------------------------------

def cfg(p: dict | None = None, spec: dict | None = None, **kw) -> ContainerConfig:
    p = p or pod()
    spec = spec or {"name": "c", "image": "busybox"}
    return ContainerConfig(pod_uid=UID, name=spec["name"], command=kw.pop("command", ["sh"]),
                           args=kw.pop("args", ["-c", "echo"]), env=kw.pop("env", {"A": "1", "B": "2"}),
                           restart_count=kw.pop("restart_count", 3), image="docker.io/library/busybox:latest",
                           image_id="sha256:abc", pod=p, spec=spec, **kw)


FILES = t.ContainerFiles(etc_hosts=f"/data/pods/{UID}/etc.hosts", termination_log=f"/data/pods/{UID}/c/3.termination-log")


def test_container_config_basics() -> None:
    spec = {"name": "c", "image": "busybox", "workingDir": "/w", "tty": True, "stdin": True}
    c = t.container_config(cfg(spec=spec), files=FILES)
    assert (c.metadata.name, c.metadata.attempt, c.image.image) == ("c", 3, "docker.io/library/busybox:latest")
    assert (list(c.command), list(c.args), c.working_dir) == (["sh"], ["-c", "echo"], "/w")
    assert [(e.key, e.value) for e in c.envs] == [("A", "1"), ("B", "2")]
    assert c.log_path == "c/3.log" and c.tty and c.stdin and not c.stdin_once
    assert dict(c.labels) == {t.POD_NAME: "web", t.POD_NAMESPACE: "shop", t.POD_UID: UID, t.CONTAINER_NAME: "c"}
    ann = dict(c.annotations)
    assert ann[t.RESTART_COUNT] == "3" and ann[t.TERMINATION_MESSAGE_PATH] == "/dev/termination-log"
    assert len(ann[t.CONTAINER_HASH]) == 8
    assert [(m.container_path, m.host_path) for m in c.mounts] == [
        ("/etc/hosts", FILES.etc_hosts), ("/dev/termination-log", FILES.termination_log)]
    ns = c.linux.security_context.namespace_options
    assert (ns.network, ns.pid) == (api.POD, api.CONTAINER)  # repeated from the sandbox


def test_container_config_custom_termination_path_and_empty_command() -> None:
    spec = {"name": "c", "terminationMessagePath": "/tmp/msg"}
    c = t.container_config(cfg(spec=spec, command=[], args=[]), files=FILES)
    assert list(c.command) == [] and list(c.args) == []  # the image's ENTRYPOINT and CMD
    assert c.mounts[1].container_path == "/tmp/msg"
    assert t.container_config(cfg(), files=t.ContainerFiles()).mounts == []


def test_container_security_context() -> None:
    p = pod(securityContext={"runAsUser": 1000, "runAsGroup": 2000, "supplementalGroups": [7]})
    spec = {"name": "c", "securityContext": {
        "capabilities": {"add": ["NET_ADMIN", "CAP_SYS_TIME"], "drop": ["all"]}, "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False, "runAsUser": 1001}}
    sc = t.container_config(cfg(p, spec), files=FILES).linux.security_context
    assert list(sc.capabilities.add_capabilities) == ["CAP_NET_ADMIN", "CAP_SYS_TIME"]
    assert list(sc.capabilities.drop_capabilities) == ["ALL"]
    assert sc.readonly_rootfs and sc.no_new_privs and not sc.privileged
    assert (sc.run_as_user.value, sc.run_as_group.value, list(sc.supplemental_groups)) == (1001, 2000, [7])
    sc = t.container_config(cfg(spec={"name": "c", "securityContext": {"privileged": True,
                                                                      "allowPrivilegeEscalation": True}}),
                            files=FILES).linux.security_context
    assert sc.privileged and not sc.no_new_privs


def test_image_user_when_run_as_user_is_unset() -> None:
    sc = t.container_config(cfg(), files=FILES, image_user=t.ImageUser(uid=101)).linux.security_context
    assert sc.run_as_user.value == 101
    sc = t.container_config(cfg(), files=FILES, image_user=t.ImageUser(username="nginx")).linux.security_context
    assert not sc.HasField("run_as_user") and sc.run_as_username == "nginx"


@pytest.mark.parametrize(("pod_sc", "ctr_sc", "image_user", "error"), [
    ({"runAsNonRoot": True}, {}, t.ImageUser(uid=0), "container has runAsNonRoot and image will run as root"),
    ({"runAsNonRoot": True}, {}, t.ImageUser(), "container has runAsNonRoot and image will run as root"),
    ({}, {"runAsNonRoot": True}, t.ImageUser(username="app"), "image has non-numeric user (app)"),
    ({"runAsNonRoot": True}, {"runAsUser": 0}, t.ImageUser(uid=1000), "container's runAsUser breaks non-root policy"),
    ({"runAsNonRoot": True}, {}, t.ImageUser(uid=1000), None),
    ({"runAsNonRoot": True, "runAsUser": 5}, {}, t.ImageUser(uid=0), None),
    ({}, {"runAsNonRoot": False}, t.ImageUser(uid=0), None),
])
def test_run_as_non_root(pod_sc, ctr_sc, image_user, error) -> None:
    spec = {"name": "c", "securityContext": ctr_sc}
    if error is None:
        t.container_config(cfg(pod(securityContext=pod_sc), spec), files=FILES, image_user=image_user)
        return
    with pytest.raises(t.ConfigError) as err:
        t.container_config(cfg(pod(securityContext=pod_sc), spec), files=FILES, image_user=image_user)
    assert error in str(err.value) and f'(pod: "web_shop({UID})", container: c)' in str(err.value)


def test_container_resources_in_config() -> None:
    spec = {"name": "c", "resources": {"limits": {"cpu": "2", "memory": "1Gi"}}}
    r = t.container_config(cfg(spec=spec), files=FILES).linux.resources
    assert (r.cpu_quota, r.cpu_shares, r.memory_limit_in_bytes) == (200_000, 2048, 2**30)


def test_container_hash_is_stable() -> None:
    assert t.container_hash({"name": "c", "image": "x"}) == t.container_hash({"image": "x", "name": "c"})
    assert t.container_hash({"name": "c"}) != t.container_hash({"name": "d"})


# ---- status → record -----------------------------------------------------------------------

NS = 1_700_000_000_123_456_789


def status(**kw) -> api.ContainerStatus:
    base = dict(id="abc", metadata=api.ContainerMetadata(name="c", attempt=2), state=api.CONTAINER_EXITED,
                created_at=NS - 10**9, started_at=NS, finished_at=NS + 5 * 10**9, exit_code=0,
                image=api.ImageSpec(image="docker.io/library/busybox:latest"),
                image_ref="docker.io/library/busybox@sha256:" + "c" * 64, log_path=f"/data/pods/{UID}/c/2.log",
                annotations={t.RESTART_COUNT: "2"})
    base.update(kw)
    return api.ContainerStatus(**base)


def test_record_from_exited_status() -> None:
    r = t.record_from_status(status())
    assert (r.id, r.name, r.restart_count, r.exit_code, r.reason) == ("abc", "c", 2, 0, "Completed")
    assert (r.started_at, r.finished_at) == ("2023-11-14T22:13:20Z", "2023-11-14T22:13:25Z")
    assert r.image_id == "docker.io/library/busybox@sha256:" + "c" * 64 and r.image == "docker.io/library/busybox:latest"
    assert (r.log_path, r.log_format, r.scheme) == (f"/data/pods/{UID}/c/2.log", "cri", "containerd")
    assert not r.running
    assert t.record_from_status(status(exit_code=3, reason="Error")).reason == "Error"
    assert t.record_from_status(status(exit_code=137, reason="OOMKilled")).reason == "OOMKilled"
    r = t.record_from_status(status(exit_code=128, reason="StartError", message="exec: no such file", started_at=0))
    assert (r.reason, r.message, r.started_at) == ("StartError", "exec: no such file", "2023-11-14T22:13:19Z")


def test_record_from_running_status() -> None:
    r = t.record_from_status(status(state=api.CONTAINER_RUNNING, finished_at=0))
    assert r.running and r.finished_at is None and r.reason is None


def test_termination_message_and_log_fallback() -> None:
    assert t.termination_message(b"x" * 5000 + b"end") == ("x" * 4093 + "end")
    log = ("2024-01-01T00:00:00Z stdout P par\n2024-01-01T00:00:00Z stdout F tial\n"
           "2024-01-01T00:00:01Z stderr F oops\n")
    assert t.log_tail_message(log) == "partial\noops\n"


# ---- CNI -----------------------------------------------------------------------------------

def test_render_conflist() -> None:
    conf = json.loads(cni.render_conflist(bridge="pk1a2bn1", subnet="10.244.1.0/24", ipam_dir="/d/cni/ipam",
                                          routes=["10.244.0.0/16", "10.96.0.0/16", "10.250.0.0/16"]))
    assert (conf["cniVersion"], conf["name"]) == ("1.0.0", "pocketkube")
    bridge, portmap = conf["plugins"]
    assert (bridge["type"], bridge["bridge"], bridge["isGateway"], bridge["ipMasq"], bridge["hairpinMode"]) == \
        ("bridge", "pk1a2bn1", True, False, True)
    assert not bridge["isDefaultGateway"]
    assert bridge["ipam"] == {"type": "host-local", "dataDir": "/d/cni/ipam",
                              "ranges": [[{"subnet": "10.244.1.0/24", "gateway": "10.244.1.1"}]],
                              "routes": [{"dst": "10.244.0.0/16"}, {"dst": "10.96.0.0/16"}, {"dst": "10.250.0.0/16"}]}
    assert portmap == {"type": "portmap", "capabilities": {"portMappings": True}, "snat": True}
    assert "0.0.0.0/0" not in json.dumps(conf)


@pytest.mark.parametrize(("kw", "error"), [
    ({"bridge": "a-very-long-bridge-name"}, "bridge name"),
    ({"bridge": "a/b"}, "bridge name"),
    ({"subnet": "10.244.1.5/24"}, "host bits set"),
    ({"subnet": "10.244.1.0/31"}, "too small"),
    ({"gateway": "10.244.2.1"}, "not a host address"),
    ({"ipam_dir": "relative"}, "absolute"),
    ({"routes": ["10.96.0.0/33"]}, "pod route"),
    ({"routes": ["fd00::/64"]}, "IP version"),
])
def test_render_conflist_rejects(kw: dict, error: str) -> None:
    args = {"bridge": "pk0", "subnet": "10.244.1.0/24", "ipam_dir": "/d", **kw}
    with pytest.raises(ValueError, match=error):
        cni.render_conflist(**args)


def test_write_conflist_is_atomic(tmp_path) -> None:
    path = cni.write_conflist(tmp_path / "net.d", "{}\n")
    assert path.name == "10-pocketkube.conflist" and path.read_text() == "{}\n"
    assert [p.name for p in (tmp_path / "net.d").iterdir()] == ["10-pocketkube.conflist"]


# ---- cgroups (on a fake cgroupfs tree) ---------------------------------------------------------

def test_cgroup_dirs_v1_and_v2(tmp_path) -> None:
    v1 = tmp_path / "v1"
    for h in ("cpu", "memory", "systemd", "unified"):
        (v1 / h).mkdir(parents=True)
    (v1 / "cpuacct").symlink_to(v1 / "cpu")
    assert cgroup_dirs("/pk/n1/podX", v1) == [v1 / h / "pk/n1/podX" for h in ("cpu", "memory", "systemd", "unified")]
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "cgroup.controllers").write_text("cpu memory\n")
    assert cgroup_dirs("/pk/n1/podX", v2) == [v2 / "pk/n1/podX"]


def test_remove_cgroup_removes_the_tree(tmp_path) -> None:
    (tmp_path / "cpu" / "pk" / "n1" / "podX" / "ctr").mkdir(parents=True)
    (tmp_path / "cpu" / "pk" / "n1" / "podY").mkdir(parents=True)
    remove_cgroup("/pk/n1/podX", tmp_path)
    remove_cgroup("/pk/n1/podZ", tmp_path)  # absent: fine
    assert sorted(p.name for p in (tmp_path / "cpu" / "pk" / "n1").iterdir()) == ["podY"]


def test_run_as_non_root_with_an_absent_image_is_left_to_create_container() -> None:
    spec = {"name": "c", "securityContext": {"runAsNonRoot": True}}
    sc = t.container_config(cfg(spec=spec), files=FILES, image_user=None).linux.security_context
    assert not sc.HasField("run_as_user") and sc.run_as_username == ""


def test_pid_from_verbose_info() -> None:
    assert t.pid_from_info({"info": '{"pid": 4242, "sandboxID": "x"}'}) == 4242
    assert t.pid_from_info({}) == 0 and t.pid_from_info({"info": "not json"}) == 0
    assert t.pid_from_info({"info": '{"pid": 0}'}) == 0 and t.pid_from_info({"info": "[]"}) == 0
    assert t.record_from_status(status(), pid=7).pid == 7
