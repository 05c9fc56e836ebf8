"""Two API servers on one 3-member etcd (plain, then TLS), end to end: `pocketkube server` A and
B (each with its own controllers and scheduler, leader-elected) on one port at two addresses,
sharing the cluster CA, tokens and service-account key (copied, as kubeadm's control-plane join
copies them), and three process-runtime agents given both servers. Writes through one server are
read and watched through the other; the `kubernetes` endpoints list both; the seed works; an etcd
snapshot restores into a new etcd that a third server serves; and after kill -9 of A the agents
and the control plane go on through B. Address ranges of its own: servers 127.176.100.1-2, nodes
127.176.0.1-3, pods 127.178.N.0/24, Services 127.177.0.0/16, load balancers 127.179.0.0/24."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
import yaml
from svc_helpers import nginx_welcome, seed_pods_ready

from pocketkube.apiserver.pki import PKI
from pocketkube.proxy.nftables.proxier import table_name
from pocketkube.testing.etcd import ETCDCTL, HINT, EtcdCluster, etcd_cluster, free_ports, have_etcd
from pocketkube.testing.procs import ServerProcess, kubectl_binaries, preferred_kubectl, processes_under
from pocketkube.testing.requires import KUBECTL, NGINX, have_nginx, requires
from pocketkube.testing.waits import get_json, is_ready, wait_for

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
SERVER_IPS = ("127.176.100.1", "127.176.100.2")
NODES = [(f"node-{i}", f"127.176.0.{i}", f"127.178.{i}.0/24") for i in (1, 2, 3)]
# Short leader-election timings so that B's control plane takes over well within 15 s.
ELECTION = ["--leader-elect-lease-duration", "8", "--leader-elect-renew-deadline", "6",
            "--leader-elect-retry-period", "1"]
CMS = "/api/v1/namespaces/default/configmaps"

pytestmark = [requires(have_etcd(), HINT), requires(have_nginx(), NGINX), requires(bool(kubectl_binaries()), KUBECTL),
              pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(240)]


def _common_port() -> int:
    """A port free on both server addresses (kube-apiservers share one port in the endpoints)."""
    for _ in range(20):
        with socket.socket() as a, socket.socket() as b:
            a.bind((SERVER_IPS[0], 0))
            port = a.getsockname()[1]
            try:
                b.bind((SERVER_IPS[1], port))
            except OSError:
                continue
            return port
    raise RuntimeError("no common free port")


def _share_pki(src: Path, dst: Path) -> None:
    """The cluster credentials a second control-plane host needs; it makes its own serving cert."""
    (dst / "pki").mkdir(parents=True, mode=0o700)
    for name in ("ca.crt", "ca.key", "tokens.yaml", "sa.key", "sa.pub"):
        shutil.copy2(src / "pki" / name, dst / "pki" / name)


def _node_tokens(data_dir: Path) -> None:
    """The nodes' tokens in a fresh tokens.yaml, as `up` makes them before its server starts."""
    (data_dir / "pki").mkdir(parents=True, mode=0o700)
    tokens = {"admin": secrets.token_urlsafe(32), "nodes": {name: secrets.token_urlsafe(32) for name, _, _ in NODES}}
    fd = os.open(data_dir / "pki" / "tokens.yaml", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        yaml.safe_dump(tokens, f)


class Api:
    """Plain HTTPS requests to one server as the admin."""

    def __init__(self, server: ServerProcess) -> None:
        self.host, self.port = server.url.removeprefix("https://").rsplit(":", 1)
        self.ctx = ssl.create_default_context(cafile=str(server.ca_file))
        self.token = server.token()

    def conn(self, timeout: float = 10) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection(self.host, int(self.port), context=self.ctx, timeout=timeout)

    def request(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        c = self.conn()
        try:
            c.request(method, path, body=json.dumps(body) if body is not None else None,
                      headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"})
            r = c.getresponse()
            return r.status, json.loads(r.read() or b"{}")
        finally:
            c.close()


class HA:
    def __init__(self, etcd: EtcdCluster, root: Path) -> None:
        self.etcd, self.root = etcd, root
        self.port = _common_port()
        self.servers: list[ServerProcess] = []
        self.agents: list[subprocess.Popen] = []
        self.logs: list = []

    def server(self, name: str, ip: str, extra: list[str] = ()) -> ServerProcess:
        f = self.etcd.tls_files
        tls = ["--datastore-cafile", f.cafile, "--datastore-certfile", f.certfile,
               "--datastore-keyfile", f.keyfile] if self.etcd.tls else []
        s = ServerProcess(self.root / name, extra_args=[
            "--bind-address", ip, "--datastore", self.etcd.url, *tls, "--service-cidr", "127.177.0.0/16",
            "--load-balancer-pool", "127.179.0.0/24", *ELECTION, *extra])
        s.data_dir.mkdir(exist_ok=True)
        self.servers.append(s)
        return s.start(self.port, timeout=60)

    def start_agents(self) -> None:
        a = self.servers[0]
        urls = ",".join(f"https://{ip}:{self.port}" for ip in SERVER_IPS)
        pki = PKI(a.data_dir)
        for name, ip, cidr in NODES:
            d = self.root / "nodes" / name
            d.mkdir(parents=True)
            (d / "token").write_text(pki.node_token(name))  # made by _node_tokens: only read here
            log = open(self.root / f"{name}.log", "ab")  # noqa: SIM115 - closed in close()
            self.logs.append(log)
            self.agents.append(subprocess.Popen(
                [sys.executable, "-m", "pocketkube", "agent", "--server", urls, "--token-file", str(d / "token"),
                 "--ca-file", str(a.ca_file), "--node-name", name, "--node-ip", ip, "--pod-cidr", cidr,
                 "--data-dir", str(d), "--runtime", "process", "--lease-interval", "2",
                 "--node-cpu", "1", "--node-memory", "1Gi"],
                stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True))

    def close(self) -> None:
        for p in self.agents:  # each agent kills its pods and removes its data plane on SIGTERM
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
        for p in self.agents:
            try:
                p.wait(40)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        for f in self.logs:
            f.close()
        for s in self.servers:
            s.stop()


@pytest.fixture(scope="module", params=[False, True], ids=["plain", "tls"])
def ha(request):
    root = Path(tempfile.mkdtemp(prefix="pk-ha-etcd-"))
    try:
        with etcd_cluster(3, tls=request.param) as etcd:
            h = HA(etcd, root)
            try:
                _node_tokens(root / "a")  # before A starts: it reads its tokens once
                a = h.server("a", SERVER_IPS[0])
                # A's control plane leads: the failover test then sees a new leader.
                a_id = (a.data_dir / "controlplane-identity")
                k = preferred_kubectl(a.kubeconfig)
                try:
                    wait_for(lambda: a_id.exists() and _holder(k) == a_id.read_text().strip(), timeout=30,
                             what="A's control plane holding the lease")
                finally:
                    k.close()
                _share_pki(a.data_dir, root / "b")
                h.start_agents()
                h.server("b", SERVER_IPS[1])
                yield h
            finally:
                h.close()
                left = processes_under(root)
                assert left == [], f"processes left behind: {left}"
                tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True,
                                        check=False).stdout.split() if shutil.which("nft") else []
                ours = {table_name(name, ip) for name, ip, _ in NODES} & set(tables)
                assert not ours, f"nftables tables left behind: {ours}"
    finally:
        if not os.environ.get("POCKETKUBE_KEEP_TEST_DATA"):
            shutil.rmtree(root, ignore_errors=True)


def _holder(k, lease: str = "kube-controller-manager") -> str:
    r = k.run("get", "lease", "-n", "kube-system", lease, "-o", "jsonpath={.spec.holderIdentity}")
    return r.stdout.strip() if r.returncode == 0 else ""


def cm(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": "v"}}


def test_create_through_a_read_through_b(ha):
    a, b = (Api(s) for s in ha.servers[:2])
    status, made = a.request("POST", CMS, cm("from-a"))
    assert status == 201, made
    rv = int(made["metadata"]["resourceVersion"])
    # Consistent reads (no resourceVersion): B answers at once with A's write.
    status, got = b.request("GET", CMS + "/from-a")
    assert status == 200 and got["metadata"]["uid"] == made["metadata"]["uid"], got
    assert int(got["metadata"]["resourceVersion"]) == rv
    status, listed = b.request("GET", CMS)
    assert "from-a" in {i["metadata"]["name"] for i in listed["items"]}
    assert int(listed["metadata"]["resourceVersion"]) >= rv  # one revision space: RVs compare
    status, later = b.request("POST", CMS, cm("from-b"))
    assert status == 201 and int(later["metadata"]["resourceVersion"]) > rv
    k = preferred_kubectl(ha.servers[1].kubeconfig)
    try:
        assert "from-a" in k.ok("get", "configmaps", "from-a", "-o", "name")
    finally:
        k.close()


SVCS = "/api/v1/namespaces/default/services"


def test_services_created_through_both_servers_never_share_an_address(ha):
    """ClusterIPs and nodePorts are committed through etcd's range records: 40 NodePort Services
    created at once, half through each server, get 40 distinct ClusterIPs and nodePorts; the
    same nodePort asked of both servers goes to exactly one (422 from the other)."""
    apis = [Api(s) for s in ha.servers[:2]]
    names = [f"alloc-{i}" for i in range(40)]
    results: dict[str, tuple[int, dict]] = {}

    def create(i: int, name: str) -> None:
        body = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
                "spec": {"type": "NodePort", "selector": {"app": name}, "ports": [{"port": 80}]}}
        results[name] = apis[i % 2].request("POST", SVCS, body)
    try:
        threads = [threading.Thread(target=create, args=(i, n)) for i, n in enumerate(names)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert all(code == 201 for code, _ in results.values()), {n: r for n, r in results.items() if r[0] != 201}
        ips = [svc["spec"]["clusterIP"] for _, svc in results.values()]
        ports = [svc["spec"]["ports"][0]["nodePort"] for _, svc in results.values()]
        assert len(set(ips)) == 40 and len(set(ports)) == 40, (sorted(ips), sorted(ports))
        # One nodePort, asked of both at once: one Service gets it.
        free = max(ports) + 1
        both: list[tuple[int, dict]] = []

        def claim(i: int) -> None:
            body = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": f"alloc-claim-{i}"},
                    "spec": {"type": "NodePort", "selector": {"app": "x"}, "ports": [{"port": 80, "nodePort": free}]}}
            both.append(apis[i].request("POST", SVCS, body))
        claims = [threading.Thread(target=claim, args=(i,)) for i in (0, 1)]
        for t in claims:
            t.start()
        for t in claims:
            t.join(60)
        assert sorted(code for code, _ in both) == [201, 422], both
        refused = next(body for code, body in both if code == 422)
        assert "provided port is already allocated" in refused["message"], refused
    finally:
        for name in [*names, "alloc-claim-0", "alloc-claim-1"]:
            apis[0].request("DELETE", f"{SVCS}/{name}")


def test_a_watch_on_a_sees_writes_through_b(ha):
    a, b = (Api(s) for s in ha.servers[:2])
    _, listed = a.request("GET", CMS)
    rv = listed["metadata"]["resourceVersion"]
    seen: list[dict] = []
    conn = a.conn(timeout=20)
    conn.request("GET", f"{CMS}?watch=1&resourceVersion={rv}&timeoutSeconds=20",
                 headers={"Authorization": f"Bearer {a.token}"})
    resp = conn.getresponse()
    assert resp.status == 200

    def read() -> None:
        with contextlib.suppress(OSError, ValueError):
            for line in resp:
                event = json.loads(line)
                seen.append(event)
                if event["object"]["metadata"].get("name") == "watched":
                    return
    t = threading.Thread(target=read, daemon=True)
    t.start()
    try:
        status, made = b.request("POST", CMS, cm("watched"))
        assert status == 201
        wait_for(lambda: any(e["object"]["metadata"]["name"] == "watched" for e in seen), timeout=10,
                 what="A's watch delivering B's write")
        event = next(e for e in seen if e["object"]["metadata"]["name"] == "watched")
        assert event["type"] == "ADDED"
        assert event["object"]["metadata"]["resourceVersion"] == made["metadata"]["resourceVersion"]
    finally:
        conn.close()
        t.join(5)


def _endpoint_ips(api: Api) -> list[str]:
    status, ep = api.request("GET", "/api/v1/namespaces/default/endpoints/kubernetes")
    if status != 200:
        return []
    return sorted(a["ip"] for s in ep.get("subsets") or [] for a in s.get("addresses") or [])


def test_kubernetes_endpoints_list_both_servers(ha):
    b = Api(ha.servers[1])
    wait_for(lambda: _endpoint_ips(b) == list(SERVER_IPS), timeout=25, what="both servers in the endpoints")
    _, ep = b.request("GET", "/api/v1/namespaces/default/endpoints/kubernetes")
    assert ep["subsets"][0]["ports"][0]["port"] == ha.port



def test_the_seed_works(ha):
    k = preferred_kubectl(ha.servers[0].kubeconfig)
    try:
        k.ok("create", "-f", str(EXAMPLES / "deployment-definition.yaml"))
        k.ok("create", "-f", str(EXAMPLES / "service-definition.yaml"))

        pods = wait_for(lambda: seed_pods_ready(k), timeout=60, what="3 ready seed pods")
        assert len({p["spec"]["nodeName"] for p in pods}) == 3
        for _, ip, _ in NODES:
            wait_for(lambda ip=ip: nginx_welcome(ip), timeout=15, what=f"nginx via {ip}:30008")
    finally:
        k.close()


def test_snapshot_restores_into_a_new_etcd(ha):
    snap = ha.root / "snapshot.db"
    ha.etcd.etcdctl("snapshot", "save", str(snap), members=[ha.etcd.leader() or 0], timeout=30)
    d = ha.root / "restored"
    d.mkdir()
    client, peer = free_ports(2)
    token = f"pk-restore-{client}"
    (d / "cluster.json").write_text(json.dumps({"client": [client], "peer": [peer], "token": token}))
    subprocess.run([ETCDCTL, "snapshot", "restore", str(snap), "--data-dir", str(d / "m0"), "--name", "m0",
                    "--initial-cluster", f"m0=http://127.0.0.1:{peer}", "--initial-cluster-token", token,
                    "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}"],
                   check=True, capture_output=True, env={**os.environ, "ETCDCTL_API": "3"}, timeout=30)
    restored = EtcdCluster(1, directory=d)
    try:
        restored.start()
        c = ServerProcess(ha.root / "c", extra_args=["--no-control-plane", "--datastore", restored.url,
                                                     "--service-cidr", "127.177.0.0/16"])
        _share_pki(ha.servers[0].data_dir, c.data_dir)
        c.start(0, timeout=60)
        try:
            api = Api(c)
            for name in ("from-a", "from-b", "watched"):
                status, got = api.request("GET", f"{CMS}/{name}")
                assert status == 200, (name, got)
            status, dep = api.request("GET", "/apis/apps/v1/namespaces/default/deployments/myapp-deployment")
            assert status == 200 and dep["spec"]["replicas"] == 3
        finally:
            c.stop()
    finally:
        restored.close()


@contextlib.contextmanager
def _lb(servers: list[ServerProcess], root: Path):
    """`pocketkube lb` in front of the servers, and a kubectl whose kubeconfig points at it."""
    proc = subprocess.Popen([sys.executable, "-m", "pocketkube", "lb", "--server", ",".join(s.url for s in servers),
                             "--listen", "127.0.0.1:0"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("• forwarding 127.0.0.1:"), line
        port = int(line.split()[2].rsplit(":", 1)[1])
        config = yaml.safe_load(servers[0].kubeconfig.read_text())
        config["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{port}"
        path = root / "lb-kubeconfig"
        path.write_text(yaml.safe_dump(config))
        k = preferred_kubectl(path)
        try:
            yield k
        finally:
            k.close()
    finally:
        proc.terminate()
        proc.wait(10)


def test_server_a_killed_agents_and_controllers_move_to_b(ha):
    a, b = ha.servers[0], ha.servers[1]
    kb = preferred_kubectl(b.kubeconfig)
    try:
        with _lb([a, b], ha.root) as kl:
            assert kl.ok("get", "configmaps", "-o", "name") is not None  # through A
            before = _holder(kb)
            a.kill9()
            killed = time.monotonic()
            # kubectl through `pocketkube lb` goes on at once: A refuses, B answers.
            kl.ok("create", "configmap", "after-a-died")
            assert "configmap/after-a-died" in kb.ok("get", "configmaps", "-o", "name")
        leader = wait_for(lambda: (h := _holder(kb)) != before and h, timeout=15, what="a new controller leader")
        assert leader == (b.data_dir / "controlplane-identity").read_text().strip()
        assert time.monotonic() - killed < 15
        wait_for(lambda: _holder(kb, "kube-scheduler") == leader, timeout=max(1.0, 15 - (time.monotonic() - killed)),
                 what="B's scheduler leading")
        # The agents heartbeat through B: every node's Lease is renewed after the kill.
        renewed = {n["metadata"]["name"]: n["metadata"]["resourceVersion"]
                   for n in get_json(kb, "leases", "-n", "kube-node-lease")["items"]}
        assert sorted(renewed) == [name for name, _, _ in NODES]

        def all_renewed() -> bool:
            now = {n["metadata"]["name"]: n["metadata"]["resourceVersion"]
                   for n in get_json(kb, "leases", "-n", "kube-node-lease")["items"]}
            return all(now[name] != rv for name, rv in renewed.items())
        wait_for(all_renewed, timeout=15, what="every node's Lease renewed through B")
        kb.ok("scale", "deployment", "myapp-deployment", "--replicas=5")

        def ready():
            pods = [p for p in get_json(kb, "pods", "-l", "app=myapp,type=front-end")["items"] if is_ready(p)]
            return pods if len(pods) == 5 else None
        wait_for(ready, timeout=40, what="5 ready pods after the scale through B")
        nodes = get_json(kb, "nodes")["items"]
        assert all(any(c["type"] == "Ready" and c["status"] == "True" for c in n["status"]["conditions"])
                   for n in nodes), [n["status"]["conditions"] for n in nodes]
        wait_for(lambda: _endpoint_ips(Api(b)) == [SERVER_IPS[1]], timeout=max(1.0, 25 - (time.monotonic() - killed)),
                 what="A dropped from the kubernetes endpoints within 25 s of the kill")
        kb.run("delete", "service/myapp-service", "deployment/myapp-deployment", "--ignore-not-found",
               "--wait=true", timeout=60)
    finally:
        kb.close()
