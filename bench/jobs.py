"""Job throughput benchmark (issue 10): a Job of 100 completions, parallelism 10, of
`busybox true`, against the create-to-Complete time of a one-pod Job in the same run.

Each run, on one cluster started for the whole benchmark (container runtime by default, on this
topic's own address ranges, busybox loaded with `pocketkube image load`):
  1. single: create a Job with one `busybox true` pod; time from the create call until its
     Complete condition is seen (polled every 20 ms);
  2. batch: the same with completions 100, parallelism 10;
each Job is deleted (foreground) and its pods waited for, and (containerd) every measurement
starts once the node's containerd holds no container: tearing 100 sandboxes down takes
seconds after their pods are gone, and a Job measured meanwhile would pay for it. Target (the issue's):
batch ≤ 1.5 × 10 × single, i.e. ratio = batch / (10 × single) ≤ 1.5. Medians over --runs.

    sudo .venv/bin/python bench/jobs.py [--runs 3] [--nodes 1] [--runtime containerd|process]
                                        [--out bench/results-jobs.txt]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import date
from pathlib import Path

from kubernetes import client, config

from pocketkube.testing import images
from pocketkube.testing.archives import oci_archive
from pocketkube.testing.procs import running_cluster, running_container_cluster

TARGET = 1.5
# This topic's address ranges (container mode); process mode uses their 127/8 twins.
CONTAINER_RANGES = {"node_ip_base": "10.216.0.0", "pod_cidr_base": "10.226.0.0/16", "service_cidr": "10.236.0.0/16",
                    "lb_pool": "10.216.1.0/24"}
PROCESS_RANGES = {"node_ip_base": "127.0.216.0", "pod_cidr_base": "127.226.0.0/16", "service_cidr": "127.236.0.0/16",
                  "lb_pool": "127.216.1.0/24"}


def job(name: str, completions: int, parallelism: int) -> dict:
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name}, "spec": {
        "completions": completions, "parallelism": parallelism, "template": {"spec": {
            "restartPolicy": "Never", "terminationGracePeriodSeconds": 0,
            "containers": [{"name": "c", "image": "busybox", "imagePullPolicy": "IfNotPresent",
                            "command": ["true"]}]}}}}


def complete(batch: client.BatchV1Api, name: str) -> bool:
    status = batch.read_namespaced_job_status(name, "default").status
    conditions = (status and status.conditions) or []
    if any(c.type == "Failed" and c.status == "True" for c in conditions):
        raise RuntimeError(f"job {name} failed: {conditions}")
    return any(c.type == "Complete" and c.status == "True" for c in conditions)


def timed_job(batch: client.BatchV1Api, name: str, completions: int, parallelism: int, timeout: float) -> float:
    start = time.monotonic()
    batch.create_namespaced_job("default", job(name, completions, parallelism))
    while not complete(batch, name):
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"job {name} not complete after {timeout}s")
        time.sleep(0.02)
    return time.monotonic() - start


def clean(batch: client.BatchV1Api, core: client.CoreV1Api, name: str) -> None:
    batch.delete_namespaced_job(name, "default", propagation_policy="Foreground")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        jobs = [j for j in batch.list_namespaced_job("default").items if j.metadata.name == name]
        pods = core.list_namespaced_pod("default", label_selector=f"batch.kubernetes.io/job-name={name}").items
        if not jobs and not pods:
            return
        time.sleep(0.1)
    raise TimeoutError(f"job {name} and its pods not gone")


def quiesce(data_dir: Path, nodes: int, timeout: float = 300) -> float:
    """Wait until no node's containerd holds a container or sandbox (the kubelet tears the
    previous pods' sandboxes down after their API objects are gone); the seconds waited."""
    start = time.monotonic()
    socks = [data_dir / "nodes" / f"node-{i}" / "containerd" / "containerd.sock" for i in range(1, nodes + 1)]
    while time.monotonic() - start < timeout:
        left = sum(len(subprocess.run(["ctr", "-a", str(s), "-n", "k8s.io", "containers", "ls", "-q"],
                                      capture_output=True, text=True).stdout.split()) for s in socks)
        if not left:
            return time.monotonic() - start
        time.sleep(0.1)
    raise TimeoutError("the nodes still hold containers")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--nodes", type=int, default=1)
    ap.add_argument("--runtime", choices=("containerd", "process"), default="containerd")
    ap.add_argument("--completions", type=int, default=100)
    ap.add_argument("--parallelism", type=int, default=10)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    singles: list[float] = []
    batches: list[float] = []
    teardowns: list[float] = []
    with ExitStack() as stack:
        if args.runtime == "containerd":
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="pk-bench-jobs-")))
            archive = oci_archive(images.busybox_image().layout, tmp / "busybox.tar",
                                  name="docker.io/library/busybox:latest")
            cluster = stack.enter_context(running_container_cluster(
                "pk-bench-jobs-", archives=[archive], nodes=args.nodes, **CONTAINER_RANGES))
        else:
            cluster = stack.enter_context(running_cluster("pk-bench-jobs-", nodes=args.nodes, **PROCESS_RANGES))
        api = config.new_client_from_config(str(cluster.kubeconfig))
        batch, core = client.BatchV1Api(api), client.CoreV1Api(api)
        settle = (lambda: quiesce(cluster.data_dir, args.nodes)) if args.runtime == "containerd" else (lambda: 0.0)
        # A warm-up Job: the first pod of a node pays for image and runtime caches.
        timed_job(batch, "warmup", 1, 1, 120)
        clean(batch, core, "warmup")
        for i in range(args.runs):
            # Each measurement starts on an idle node: the previous pods' sandboxes torn down.
            settle()
            singles.append(timed_job(batch, f"single-{i}", 1, 1, 120))
            clean(batch, core, f"single-{i}")
            settled = settle()
            batches.append(timed_job(batch, f"batch-{i}", args.completions, args.parallelism, 900))
            clean(batch, core, f"batch-{i}")
            teardowns.append(settle())
            print(f"run {i}: single {singles[-1]:.2f}s, batch {batches[-1]:.2f}s, sandbox teardown after it "
                  f"{teardowns[-1]:.1f}s (after the single {settled:.1f}s)", file=sys.stderr)
    single, whole = statistics.median(singles), statistics.median(batches)
    ratio = whole / (10 * single)
    lines = [
        f"bench/jobs.py --runs {args.runs} --nodes {args.nodes} --runtime {args.runtime} ({date.today()}, "
        f"medians; busybox true)",
        f"one-pod Job, create to Complete (baseline): {single:.2f} s",
        f"Job of {args.completions} completions, parallelism {args.parallelism}: {whole:.2f} s "
        f"= {ratio:.2f} x (10 x baseline)   target <= {TARGET}",
        "  single: " + " ".join(f"{s:.2f}" for s in singles) + " s",
        "  batch:  " + " ".join(f"{b:.2f}" for b in batches) + " s",
        "  (after each batch, until the node held no container: " + " ".join(f"{t:.1f}" for t in teardowns) + " s)",
    ]
    print("\n".join(lines))
    if args.out:
        with args.out.open("a") as f:
            f.write("\n".join(lines) + "\n\n")
    return 0 if ratio <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
