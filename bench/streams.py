"""exec and port-forward costs on a containerd cluster running busybox, as ratios to baselines of
the same run:

- `kubectl exec box -- true` against `kubectl get pod box` (same binary, same kubeconfig, same pod;
  only the stream removed): median wall time of each, interleaved. Target ≤ 2×.
- port-forward throughput: one 100 MB HTTP download through `kubectl port-forward` against the same
  download (same Python client, same httpd, same file) straight from the pod IP. Target ≥ 30 %.
- 100 concurrent short connections through one port-forward: every one must answer.

    .venv/bin/python bench/streams.py [--runs 5] [--kubectl 1.37]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import re
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import yaml

from pocketkube.testing.image_clusters import image_cluster
from pocketkube.testing.procs import Kubectl, kubectl_binaries
from pocketkube.testing.waits import get_json, is_ready, wait_for

RANGES = {"node_ip_base": "10.194.0.0", "pod_cidr_base": "10.195.0.0/16", "service_cidr": "10.196.0.0/16",
          "lb_pool": "10.194.1.0/24"}
SIZE = 100 * 1024 * 1024


def timed(k: Kubectl, *args: str) -> float:
    t0 = time.perf_counter()
    k.ok(*args)
    return time.perf_counter() - t0


def download(host: str, port: int, path: str) -> tuple[int, float]:
    """Bytes of the body (headers included) and seconds, read in 256 KiB chunks."""
    t0 = time.perf_counter()
    total = 0
    with socket.create_connection((host, port), timeout=60) as s:
        s.sendall(f"GET {path} HTTP/1.0\r\n\r\n".encode())
        while chunk := s.recv(262144):
            total += len(chunk)
    return total, time.perf_counter() - t0


def short(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
            s.sendall(b"GET /small HTTP/1.0\r\n\r\n")
            data = b""
            while chunk := s.recv(4096):
                data += chunk
    except OSError:
        return False
    return data.endswith(b"small\n")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--kubectl", default="", help="a substring of the kubectl to use: 1.32 or bundled (1.37)")
    args = ap.parse_args()
    bins = kubectl_binaries()
    binary = next((v for n, v in bins.items() if args.kubectl and args.kubectl in n), None) or \
        bins.get("kubectl-1.32") or next(iter(bins.values()))
    out = Path(tempfile.mkdtemp(prefix="pk-bench-streams-"))
    try:
        run(binary, out, args.runs)
    finally:
        shutil.rmtree(out, ignore_errors=True)


def run(binary: str, out: Path, runs: int) -> None:
    with image_cluster("pk-bstrm-", out, ["busybox"], nodes=1, **RANGES) as cluster:
        k = Kubectl(binary, cluster.kubeconfig)
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "box"},
               "spec": {"containers": [{"name": "main", "image": "busybox", "imagePullPolicy": "Never",
                                        "command": ["sh", "-c", f"mkdir -p /www && head -c {SIZE} /dev/zero > "
                                                    "/www/big && echo small > /www/small && "
                                                    "exec httpd -f -p 80 -h /www"],
                                        "readinessProbe": {"exec": {"command": ["test", "-s", "/www/small"]},
                                                           "periodSeconds": 1}}]}}
        k.ok("apply", "-f", "-", input=yaml.safe_dump(pod))

        def ready_pod() -> dict | None:
            p = get_json(k, "pod", "box")
            return p if is_ready(p) else None
        ready = wait_for(ready_pod, timeout=120)
        pod_ip = ready["status"]["podIP"]
        print(f"kubectl: {binary}")

        timed(k, "exec", "box", "--", "true")  # warm caches (discovery, the node's connection)
        timed(k, "get", "pod", "box")
        get_t, exec_t = [], []
        for _ in range(runs * 4):
            get_t.append(timed(k, "get", "pod", "box"))
            exec_t.append(timed(k, "exec", "box", "--", "true"))
        g, e = statistics.median(get_t), statistics.median(exec_t)
        print(f"kubectl get pod (baseline): median {g * 1e3:.0f} ms; kubectl exec -- true: "
              f"median {e * 1e3:.0f} ms = {e / g:.2f}x (target <= 2x)")

        env = dict(os.environ, KUBECONFIG=str(k.kubeconfig), KUBECACHEDIR=k.cache, HOME=k.cache)
        pf = subprocess.Popen([binary, "port-forward", "pod/box", ":80"], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True, env=env)
        try:
            port = int(re.search(r"127\.0\.0\.1:(\d+)", pf.stdout.readline()).group(1))
            direct, through = [], []
            for _ in range(runs):
                n, t = download(pod_ip, 80, "/big")
                assert n > SIZE, n
                direct.append(n / t)
                n, t = download("127.0.0.1", port, "/big")
                assert n > SIZE, n
                through.append(n / t)
            d, f = statistics.median(direct), statistics.median(through)
            print(f"100 MB direct to the pod (baseline): {d / 1e6:.0f} MB/s; through port-forward: "
                  f"{f / 1e6:.0f} MB/s = {f / d:.2f}x (target >= 0.30x)")
            with concurrent.futures.ThreadPoolExecutor(100) as pool:
                t0 = time.perf_counter()
                ok = list(pool.map(lambda _: short(port), range(100)))
                took = time.perf_counter() - t0
            print(f"100 concurrent short connections through port-forward: {sum(ok)}/100 answered "
                  f"in {took:.2f} s")
        finally:
            pf.kill()
            pf.wait()
        k.close()


if __name__ == "__main__":
    main()
