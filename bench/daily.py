"""Daily-use benchmark (issue 14): `up -d` return time vs the foreground `up`'s Ready time (same
run, medians), `status` with three clusters (ms), `down` of a cluster with N pods (s).

Process runtime, HOME and POCKETKUBE_DATA_DIR in a temp dir; ranges 127.0.91-93.x,
127.191-199 (the e2e tests' and two more). Run:

    .venv/bin/python bench/daily.py [--runs 3] [--status-runs 20] [--pods 100] [--nodes 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RANGES = [
    ["--node-ip-base", "127.0.91.0", "--pod-cidr-base", "127.191.0.0/16", "--service-cidr", "127.193.0.0/16",
     "--load-balancer-pool", "127.195.0.0/24"],
    ["--node-ip-base", "127.0.92.0", "--pod-cidr-base", "127.192.0.0/16", "--service-cidr", "127.194.0.0/16",
     "--load-balancer-pool", "127.196.0.0/24"],
    ["--node-ip-base", "127.0.93.0", "--pod-cidr-base", "127.197.0.0/16", "--service-cidr", "127.198.0.0/16",
     "--load-balancer-pool", "127.199.0.0/24"],
]
READY = "Press Ctrl-C to stop the cluster."


class Env:
    def __init__(self, root: Path, nodes: int) -> None:
        self.root = root
        self.nodes = nodes
        self.env = dict(os.environ, HOME=str(root / "home"), POCKETKUBE_DATA_DIR=str(root / "pk"))
        self.env.pop("KUBECONFIG", None)

    def cmd(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "pocketkube", *args]

    def up_args(self, name: str, i: int) -> list[str]:
        return ["up", "--name", name, "--runtime", "process", "--nodes", str(self.nodes), "--port", "0",
                "--ingress-http-port", "0", "--ingress-https-port", "0", *RANGES[i]]

    def run(self, *args: str) -> subprocess.CompletedProcess:
        done = subprocess.run(self.cmd(*args), capture_output=True, text=True, env=self.env, timeout=300)
        if done.returncode != 0:
            raise RuntimeError(f"{args}: {done.stdout}\n{done.stderr}")
        return done

    def foreground_ready(self, name: str) -> float:
        """Seconds from starting `up` to its summary (printed once Ready); then Ctrl-C."""
        t0 = time.monotonic()
        proc = subprocess.Popen(self.cmd(*self.up_args(name, 0)), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, env=self.env, start_new_session=True)
        assert proc.stdout is not None
        for line in proc.stdout:
            if READY in line:
                break
        else:
            raise RuntimeError("foreground up exited before Ready")
        elapsed = time.monotonic() - t0
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=120)
        return elapsed

    def detached(self, name: str, i: int = 0) -> float:
        t0 = time.monotonic()
        self.run(*self.up_args(name, i), "-d")
        return time.monotonic() - t0

    def down(self, name: str) -> float:
        t0 = time.monotonic()
        self.run("down", "--name", name)
        return time.monotonic() - t0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--status-runs", type=int, default=20)
    p.add_argument("--pods", type=int, default=100)
    p.add_argument("--nodes", type=int, default=2)
    args = p.parse_args()
    env = Env(Path(tempfile.mkdtemp(prefix="pk-bench-daily-")), args.nodes)
    try:
        fg, bg = [], []
        for _ in range(args.runs):  # interleaved, so drift in the machine's load hits both alike
            fg.append(env.foreground_ready("a"))
            bg.append(env.detached("a"))
            env.down("a")
        print(f"foreground up Ready: median {statistics.median(fg):.2f}s {[round(x, 2) for x in fg]}")
        print(f"up -d returns:       median {statistics.median(bg):.2f}s {[round(x, 2) for x in bg]} "
              f"= {statistics.median(bg) / statistics.median(fg):.3f} x foreground (target <= 1.10)")

        for i, name in enumerate(("a", "b", "c")):
            env.detached(name, i)
        times = []
        for _ in range(args.status_runs):
            t0 = time.monotonic()
            out = env.run("status").stdout
            times.append((time.monotonic() - t0) * 1000)
        assert out.count("Running") == 3, out
        print(f"status, 3 clusters: median {statistics.median(times):.0f} ms, max {max(times):.0f} ms "
              "(the whole `pocketkube status` command; target <= 200 ms)")
        for name in ("b", "c"):
            env.down(name)

        kubeconfig = env.root / "pk-a" / "kubeconfig"
        kubectl = [shutil.which("kubectl") or "kubectl", "--kubeconfig", str(kubeconfig)]
        subprocess.run([*kubectl, "create", "deployment", "many", "--image", "busybox", f"--replicas={args.pods}",
                        "--", "sleep", "3600"], check=True, capture_output=True)
        t0 = time.monotonic()
        while True:
            ready = subprocess.run([*kubectl, "get", "deployment", "many", "-o",
                                    "jsonpath={.status.readyReplicas}"], capture_output=True, text=True).stdout
            if ready and int(ready) >= args.pods:
                break
            if time.monotonic() - t0 > 300:
                raise RuntimeError(f"only {ready} of {args.pods} pods ready")
            time.sleep(1)
        print(f"down with {args.pods} pods: {env.down('a'):.2f}s (target <= 2 s)")
    finally:
        for name in ("a", "b", "c"):
            subprocess.run(env.cmd("down", "--name", name, "--delete"), env=env.env, capture_output=True)
        shutil.rmtree(env.root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
