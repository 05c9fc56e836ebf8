"""Start an API server as a real subprocess and drive it with the real kubectl."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from pocketkube.proxy.nftables.proxier import table_name

KUBECTL_132 = "/usr/bin/kubectl"
KUBECTL_BUNDLED = str(Path(sys.executable).parent / "kubectl")


def kubectl_binaries() -> dict[str, str]:
    """The real kubectl builds available here, by name."""
    out = {}
    if os.path.exists(KUBECTL_132):
        out["kubectl-1.32"] = KUBECTL_132
    if os.path.exists(KUBECTL_BUNDLED):
        out["kubectl-bundled"] = KUBECTL_BUNDLED
    return out


def read_until(proc: subprocess.Popen, done: Callable[[str], bool], timeout: float) -> bool:
    """Feeds `proc`'s output lines to `done` until it returns True (then True); False at the end of
    the output or when `timeout` passes first."""
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline().decode()
        if not line:
            return False
        if done(line):
            return True
    return False


@dataclass
class ServerProcess:
    data_dir: Path
    extra_args: list[str] = field(default_factory=list)
    proc: subprocess.Popen | None = None
    url: str = ""
    port: int = 0

    @property
    def kubeconfig(self) -> Path:
        return self.data_dir / "kubeconfig"

    def token(self) -> str:
        cfg = yaml.safe_load(self.kubeconfig.read_text())
        return cfg["users"][0]["user"]["token"]

    @property
    def ca_file(self) -> Path:
        return self.data_dir / "pki" / "ca.crt"

    def start(self, port: int | None = None, timeout: float = 20) -> ServerProcess:
        port = self.port if port is None else port
        cmd = [sys.executable, "-m", "pocketkube", "server", "--data-dir", str(self.data_dir),
               "--port", str(port), *self.extra_args]
        self.log = open(self.data_dir.parent / f"{self.data_dir.name}-server.log", "ab")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.log, start_new_session=True)

        def serving(line: str) -> bool:
            m = re.match(r"API server: (https://[\d.]+:(\d+))", line)
            if m:
                self.url, self.port = m.group(1), int(m.group(2))
            return m is not None
        if read_until(self.proc, serving, timeout):
            return self
        self.stop()
        raise RuntimeError(f"API server did not start; see {self.log.name}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()
        self.log.close()
        self.proc = None

    def kill9(self) -> None:
        self.stop(signal.SIGKILL)


class Kubectl:
    """The real kubectl against one server, with its own discovery cache (no stale answers)."""

    def __init__(self, binary: str, kubeconfig: Path, cwd: Path | None = None) -> None:
        self.binary = binary
        self.kubeconfig = kubeconfig
        self.cache = tempfile.mkdtemp(prefix="kubecache-")
        self.cwd = cwd

    def run(self, *args: str, input: str | None = None, check: bool = False,
            timeout: float = 60) -> subprocess.CompletedProcess:
        env = dict(os.environ, KUBECONFIG=str(self.kubeconfig), KUBECACHEDIR=self.cache, HOME=self.cache)
        cp = subprocess.run([self.binary, *args], input=input, capture_output=True, text=True, env=env,
                            timeout=timeout, cwd=self.cwd)
        if check and cp.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({cp.returncode}): {cp.stderr}{cp.stdout}")
        return cp

    def ok(self, *args: str, input: str | None = None) -> str:
        return self.run(*args, input=input, check=True).stdout

    def close(self) -> None:
        shutil.rmtree(self.cache, ignore_errors=True)


@dataclass
class ClusterProcess:
    """`pocketkube up` as a real subprocess, on address ranges of its own so that it never
    collides with a cluster a developer runs with the defaults."""

    data_dir: Path
    nodes: int = 3
    node_ip_base: str = "127.0.9.0"
    pod_cidr_base: str = "127.245.0.0/16"
    service_cidr: str = "127.97.0.0/16"
    lb_pool: str = "127.201.0.0/24"
    runtime: str = "process"  # the tests written for process pods say so: `up` defaults to auto
    extra_args: list[str] = field(default_factory=list)
    proc: subprocess.Popen | None = None
    url: str = ""
    output: list[str] = field(default_factory=list)

    @property
    def kubeconfig(self) -> Path:
        return self.data_dir / "kubeconfig"

    def node_ip(self, i: int) -> str:
        import ipaddress

        return str(ipaddress.ip_address(self.node_ip_base) + i)

    def start(self, timeout: float = 60) -> ClusterProcess:
        cmd = [sys.executable, "-m", "pocketkube", "up", "--data-dir", str(self.data_dir), "--port", "0",
               "--nodes", str(self.nodes), "--node-ip-base", self.node_ip_base,
               "--pod-cidr-base", self.pod_cidr_base, "--service-cidr", self.service_cidr,
               "--load-balancer-pool", self.lb_pool, "--no-user-kubeconfig", "--runtime", self.runtime,
               *self.extra_args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     start_new_session=True)

        def ready(line: str) -> bool:
            self.output.append(line)
            m = re.search(r"API server ready at (https://\S+)", line)
            if m:
                self.url = m.group(1)
            return line.startswith("Press Ctrl-C")
        if read_until(self.proc, ready, timeout):
            return self
        out = "".join(self.output)
        self.stop()
        raise RuntimeError(f"pocketkube up did not start:\n{out}")

    def agent_pids(self) -> dict[str, int]:
        """node name -> agent pid, from /proc (the agents are children of `up`)."""
        out = {}
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                cmdline = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
            except OSError:
                continue
            if b"agent" in cmdline and str(self.data_dir).encode() in b" ".join(cmdline):
                name = cmdline[cmdline.index(b"--node-name") + 1].decode()
                out[name] = int(pid)
        return out

    def stop(self, timeout: float = 60) -> str:
        """Ctrl-C, as a user would; returns what `up` printed."""
        if self.proc is None:
            return ""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                rest, _ = self.proc.communicate(timeout=timeout)
                self.output.append(rest.decode())
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None
        return "".join(self.output)


def processes_under(path: Path) -> list[str]:
    """Command lines of live processes that mention `path` (leftovers after a stop)."""
    found = []
    needle = str(path).encode()
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            cmdline = open(f"/proc/{pid}/cmdline", "rb").read()
            cwd = os.readlink(f"/proc/{pid}/cwd").encode()
        except OSError:
            continue
        if needle in cmdline or cwd.startswith(needle):
            found.append(cmdline.replace(b"\0", b" ").decode(errors="replace"))
    return found


def leftover_tables(cluster: ClusterProcess) -> list[str]:
    """nftables tables of this cluster's nodes that are still programmed (none after a stop)."""
    if os.geteuid() != 0 or shutil.which("nft") is None:
        return []
    listed = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, check=False).stdout
    ours = {table_name(f"node-{i}", cluster.node_ip(i)) for i in range(1, cluster.nodes + 1)}
    return sorted(ours & set(listed.split()))


@contextlib.contextmanager
def running_cluster(prefix: str, **kwargs) -> Iterator[ClusterProcess]:
    """A started `pocketkube up` in a temp dir; on exit, Ctrl-C it and check that it stopped and
    left no process and no nftables table behind (POCKETKUBE_KEEP_TEST_DATA keeps the dir)."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    cluster = ClusterProcess(root / "data", **kwargs)
    try:
        cluster.start()
        yield cluster
    finally:
        output = cluster.stop()
        leftovers = processes_under(root)
        tables = leftover_tables(cluster)
        if not os.environ.get("POCKETKUBE_KEEP_TEST_DATA"):
            shutil.rmtree(root, ignore_errors=True)
    assert "stopped" in output, output
    assert leftovers == [], f"processes left behind: {leftovers}"
    assert tables == [], f"nftables tables left behind: {tables}"


def preferred_kubectl(kubeconfig: Path) -> Kubectl:
    """The machine's kubectl 1.32 when present, else the bundled one."""
    bins = kubectl_binaries()
    return Kubectl(bins.get("kubectl-1.32") or next(iter(bins.values())), kubeconfig)


def load_images(cluster: ClusterProcess, archives: Sequence[Path] = (), from_host: Sequence[str] = ()) -> str:
    """`pocketkube image load` into every node of `cluster`; its output (it must succeed)."""
    args = [str(a) for a in archives] + [x for name in from_host for x in ("--from-host", name)]
    load = subprocess.run([sys.executable, "-m", "pocketkube", "image", "load", "--data-dir", str(cluster.data_dir),
                           *args], capture_output=True, text=True, timeout=180)
    assert load.returncode == 0, load.stderr
    return load.stdout


@contextlib.contextmanager
def running_container_cluster(prefix: str, *, archives: Sequence[Path] = (), from_host: Sequence[str] = (),
                              extra_args: Sequence[str] = (), **kwargs) -> Iterator[ClusterProcess]:
    """`running_cluster` with `--runtime containerd --no-pod-egress` and the images loaded; after
    the stop, also no bridge or filter table of the cluster and no mount under its dir remain."""
    from pocketkube.net import hostnet

    with running_cluster(prefix, runtime="containerd", extra_args=["--no-pod-egress", *extra_args], **kwargs) as c:
        cid = hostnet.cluster_id_of(c.data_dir)
        root = c.data_dir.parent
        if archives or from_host:
            load_images(c, archives, from_host)
        yield c
    mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()
              if line.split()[4].startswith(str(root))]
    assert mounts == [], f"mounts left behind: {mounts}"
    assert hostnet.cluster_links(cid) == [], "bridges left behind"
    assert not hostnet.cluster_table_exists(cid), "the cluster's filter table was left behind"
