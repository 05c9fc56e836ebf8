"""Least privilege: credentials readable by their owner only, an agent that trusts only the
cluster CA, manifests that cannot inject a shell command or a path outside the data dir, and
pods that run as nobody (with CAP_NET_BIND_SERVICE only) unless runAsUser says otherwise."""

import asyncio
import logging
import os
import shutil
import stat
import tempfile
import time
from pathlib import Path

import pytest
from apiclient import PODS, Api

from pocketkube import nodeagent as agent_main
from pocketkube.agent.runtime import images
from pocketkube.agent.runtime.interface import ContainerConfig, StartError
from pocketkube.agent.runtime.process import ProcessRuntime, can_switch_user
from pocketkube.apiserver.pki import PKI, kubeconfig, write_kubeconfig
from pocketkube.client.rest import Client, UntrustedServer
from pocketkube.testing.procs import ServerProcess, running_cluster
from pocketkube.testing.requires import SETPRIV, requires

CAP_NET_BIND_SERVICE = 1 << 10


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# ---- credentials on disk ----

def test_keys_tokens_and_kubeconfig_are_owner_only_whatever_the_umask(tmp_path):
    old = os.umask(0)
    try:
        pki = PKI(tmp_path)
        pki.ensure(["127.0.0.1"])
        pki.node_token("node-1")
        write_kubeconfig(tmp_path / "kubeconfig", kubeconfig("https://127.0.0.1:1", "ca", pki.admin_token()))
    finally:
        os.umask(old)
    assert mode(pki.dir) == 0o700
    for secret in (pki.ca_key, pki.server_key, pki.tokens, tmp_path / "kubeconfig"):
        assert mode(secret) == 0o600, secret
    assert {pki.admin_token(), pki.controlplane_token(), pki.node_token("node-1")} <= set(pki.identities())


def test_a_running_server_keeps_its_credentials_private(server):
    assert mode(server.data_dir / "pki") == 0o700
    for name in ("pki/ca.key", "pki/apiserver.key", "pki/tokens.yaml", "kubeconfig"):
        assert mode(server.data_dir / name) == 0o600, name


# ---- the agent verifies the server's certificate ----

@pytest.fixture(scope="module")
def server():
    root = Path(tempfile.mkdtemp(prefix="pk-lp-"))
    s = ServerProcess(root / "data", extra_args=["--no-control-plane"])
    s.data_dir.mkdir()
    pki = PKI(s.data_dir)
    pki.ensure(["127.0.0.1"])
    s.node_token = pki.node_token("node-lp")
    s.start()
    yield s
    s.stop()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def wrong_ca(tmp_path) -> Path:
    other = PKI(tmp_path / "other")
    other.ensure(["127.0.0.1"])
    return other.ca_cert


def test_client_refuses_a_server_signed_by_another_ca(server, wrong_ca):
    async def call(ca: str) -> dict:
        client = Client(server.url, server.node_token, ca)
        try:
            return await client.request("GET", "/api/v1/nodes")
        finally:
            await client.close()
    with pytest.raises(UntrustedServer, match="certificate verify failed"):
        asyncio.run(call(str(wrong_ca)))
    assert asyncio.run(call(str(server.ca_file)))["kind"] == "NodeList"


def test_agent_with_a_wrong_ca_fails_clearly(server, wrong_ca, tmp_path, monkeypatch, caplog):
    cfg = agent_main.AgentConfig(server=server.url, token=server.node_token, ca_file=str(wrong_ca),
                                 node_name="node-lp", node_ip="127.0.31.1", data_dir=tmp_path / "agent",
                                 pod_cidr="127.247.1.0/24", dataplane="userspace", kubelet_port=0)
    started = time.monotonic()
    with caplog.at_level(logging.ERROR):
        code = asyncio.run(agent_main.run_agent(cfg))
    assert code == 1
    assert time.monotonic() - started < 5, "a certificate failure is final: no 30 s of retries"
    assert "could not start" in caplog.text and "certificate verify failed" in caplog.text
    assert Api(server).get("/api/v1/nodes/node-lp").status == 404  # it never registered


# ---- manifests cannot inject a shell or a path ----

@pytest.mark.parametrize("image", ["nginx; rm -rf /", "busybox && touch /tmp/pwned", "$(touch /tmp/pwned)",
                                   "`id`", "busybox|sh", "../../../bin/sh", "python:3; rm -rf /"])
def test_hostile_image_references_never_reach_a_shell(image):
    try:
        launch = images.resolve({"name": "c", "image": image}, "127.0.0.1")
    except images.ImageNotRunnable:
        return
    assert launch.argv == images.CATALOG_DEFAULTS[images.parse_image(image).name]  # the tag is only a label
    assert not any(image in arg for arg in launch.argv)


@pytest.mark.parametrize("uid,name", [("..", "c"), ("uid", ".."), ("uid", "../../etc"), ("a/b", "c"), ("uid", "")])
def test_runtime_paths_stay_inside_the_data_dir(tmp_path, uid, name):
    runtime = ProcessRuntime(tmp_path)
    with pytest.raises(StartError):
        runtime.container_dir(uid, name)


@pytest.mark.parametrize("argv,env", [(["echo", "a\0b"], {}), (["printenv"], {"X": "a\0b"}), (["ec\0ho"], {})])
def test_nul_bytes_fail_the_start_not_the_agent(tmp_path, argv, env):
    async def start() -> None:
        await ProcessRuntime(tmp_path).start(ContainerConfig(pod_uid="u", name="c", command=argv, args=[], restart_count=0,
                                                             env={"PATH": "/usr/bin:/bin", **env}))
    with pytest.raises(StartError):
        asyncio.run(start())


# ---- a real cluster: who pods run as, hostile manifests ----

@pytest.fixture(scope="module")
def cluster():
    with running_cluster("pk-lp-up-", nodes=1, node_ip_base="127.0.33.0", pod_cidr_base="127.248.0.0/16",
                         service_cidr="127.99.0.0/16", lb_pool="127.203.0.0/24",
                         extra_args=["--dataplane", "userspace"]) as c:
        yield c


@pytest.fixture(scope="module")
def capi(cluster):
    s = ServerProcess(cluster.data_dir)
    s.port = int(cluster.url.rsplit(":", 1)[1])
    api = Api(s)
    yield api
    api.close()


def run_pod(api: Api, name: str, container: dict, pod_sc: dict | None = None) -> dict:
    spec = {"restartPolicy": "Never", "containers": [{"name": "c", **container}]}
    if pod_sc:
        spec["securityContext"] = pod_sc
    r = api.post(PODS, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec})
    assert r.status == 201, r.body
    return r.json()


def finished(api: Api, name: str, timeout: float = 20) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pod = api.get(f"{PODS}/{name}").json()
        if pod.get("status", {}).get("phase") in ("Succeeded", "Failed"):
            return pod
        time.sleep(0.1)
    raise AssertionError(f"pod {name} did not finish: {pod.get('status')}")


def output(api: Api, name: str) -> str:
    finished(api, name)
    r = api.get(f"{PODS}/{name}/log")
    assert r.status == 200, r.body
    return r.body.decode()


def test_node_credentials_are_owner_only(cluster):
    for token in (cluster.data_dir / "nodes").glob("*/token"):
        assert mode(token) == 0o600, token
    assert mode(cluster.data_dir / "kubeconfig") == 0o600


@requires(can_switch_user(), SETPRIV)
def test_pods_run_as_nobody_with_only_net_bind_service_unless_run_as_user_says(capi):
    run_pod(capi, "who", {"image": "busybox", "command": ["id", "-u"]})
    run_pod(capi, "root", {"image": "busybox", "command": ["id", "-u"], "securityContext": {"runAsUser": 0}})
    run_pod(capi, "uid1234", {"image": "busybox", "command": ["id", "-u"]}, {"runAsUser": 1234})
    run_pod(capi, "caps", {"image": "busybox", "command": ["grep", "^CapEff", "/proc/self/status"]})
    assert output(capi, "who").strip() == "65534"
    assert output(capi, "root").strip() == "0"
    assert output(capi, "uid1234").strip() == "1234"
    assert int(output(capi, "caps").split()[1], 16) == CAP_NET_BIND_SERVICE


def test_hostile_manifest_fields_run_no_shell_and_stay_in_the_data_dir(capi, cluster, tmp_path):
    canary = tmp_path / "pwned"
    run_pod(capi, "image-injection", {"image": f"busybox; touch {canary}"})
    run_pod(capi, "env-injection", {"image": "busybox", "command": ["printenv", "X"],
                                    "env": [{"name": "X", "value": f"$(touch {canary})`touch {canary}`"}]})
    run_pod(capi, "workdir", {"image": "busybox", "command": ["pwd"], "workingDir": "../../../../etc"})
    run_pod(capi, "explicit-shell", {"image": "busybox", "command": ["sh", "-c", "echo $((6*7))"]})
    assert output(capi, "env-injection").strip() == f"$(touch {canary})`touch {canary}`"
    cwd = Path(output(capi, "workdir").strip()).resolve()
    assert cwd.is_relative_to(cluster.data_dir.resolve()), cwd
    assert output(capi, "explicit-shell").strip() == "42"
    pod = capi.get(f"{PODS}/image-injection").json()
    waiting = pod["status"]["containerStatuses"][0]["state"].get("waiting", {})
    assert waiting.get("reason") == "InvalidImageName", pod["status"]  # not a reference: never looked up
    assert not canary.exists()


@pytest.mark.parametrize("field,value", [("container", "../../etc"), ("container", "a/b"), ("pod", "../x"),
                                         ("pod", "..")])
def test_names_that_could_be_paths_are_rejected(capi, field, value):
    name, container = (value, "c") if field == "pod" else ("p", value)
    r = capi.post(PODS, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                         "spec": {"containers": [{"name": container, "image": "busybox"}]}})
    assert r.status in (400, 404, 422), r.body
    if r.status == 422:
        assert r.json()["reason"] == "Invalid"
