"""Ingress benchmark (issue 11): requests/s through the built-in Ingress controller vs straight at
the backend pod, with keep-alive, in the same run.

A `pocketkube up` process cluster (nodes 127.181.0.x, pods 127.181.x.0/24, Services
127.181.128.0/17, load balancers 127.182.0.0/24; the Ingress on port 18080), one backend pod
(`--backend nginx`: the host's nginx as the process runtime runs the nginx image; `python`: the
stdlib app of the e2e tests) behind a Service and an Ingress by host. Both sides use the same
wrk shape (`-t1 -c<connections> -d<duration>s`, keep-alive) at the same pod; the sides alternate
run by run; reported: the median rps of each and their ratio.

`--runtime containerd` (root): the same on a container cluster (nodes 10.181.0.x, pods
10.182.0.0/16, Services 10.183.0.0/16, load balancers 10.181.1.0/24), the nginx and python test
images built from the host's packages.

    .venv/bin/python bench/ingress.py [--runtime process|containerd] [--backend nginx|python] [--runs 5]
        [--duration 5] [--connections 32]
"""

from __future__ import annotations

import argparse
import contextlib
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "e2e"))

from ingress_helpers import app_container, ingress, try_get  # noqa: E402

from pocketkube.testing.procs import preferred_kubectl, running_cluster  # noqa: E402
from pocketkube.testing.waits import get_json, wait_for  # noqa: E402

RANGES = {"node_ip_base": "127.181.0.0", "pod_cidr_base": "127.181.0.0/17", "service_cidr": "127.181.128.0/17",
          "lb_pool": "127.182.0.0/24"}
CONTAINER_RANGES = {"node_ip_base": "10.181.0.0", "pod_cidr_base": "10.182.0.0/16", "service_cidr": "10.183.0.0/16",
                    "lb_pool": "10.181.1.0/24"}
HTTP = 18080
HOST = "bench.local"


def backend_objects(kind: str) -> str:
    if kind == "nginx":
        container = {"name": "web", "image": "nginx", "imagePullPolicy": "IfNotPresent", "ports": [{"name": "http", "containerPort": 80}],
                     "readinessProbe": {"tcpSocket": {"port": 80}, "periodSeconds": 1}}
    else:
        container = {**app_container("backend"), "name": "web"}
    deploy = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
              "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                       "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [container]}}}}
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
           "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}
    return yaml.safe_dump_all([svc, deploy])


def wrk(url: str, duration: int, connections: int) -> float:
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "-H", f"Host: {HOST}", url],
                         capture_output=True, text=True, check=True).stdout
    problems = [m.group(0) for m in (re.search(r"Socket errors: .*", out),
                                     re.search(r"Non-2xx or 3xx responses: \d+", out)) if m]
    if problems:
        print(f"    ({url}: {'; '.join(problems)})")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))


@contextlib.contextmanager
def cluster(runtime: str, backend: str):
    extra = ["--ingress-http-port", str(HTTP), "--ingress-https-port", "0"]
    if runtime == "process":
        with running_cluster("pk-bench-ingress-", nodes=1, extra_args=extra, **RANGES) as c:
            yield c
        return
    from pocketkube.testing.image_clusters import image_cluster

    with tempfile.TemporaryDirectory(prefix="pk-bench-ingress-images-") as out, \
            image_cluster("pk-bench-ingc-", Path(out), [backend], nodes=1, extra_args=extra, **CONTAINER_RANGES) as c:
        yield c


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runtime", choices=("process", "containerd"), default="process")
    p.add_argument("--backend", choices=("nginx", "python"), default="nginx")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--duration", type=int, default=5)
    p.add_argument("--connections", type=int, default=32)
    args = p.parse_args()
    with cluster(args.runtime, args.backend) as c:
        k = preferred_kubectl(c.kubeconfig)
        k.ok("apply", "-f", "-", input=backend_objects(args.backend))
        k.ok("apply", "-f", "-", input=ingress("web", HOST, [("/", "Prefix", "web", 80)]))
        k.ok("rollout", "status", "deployment/web", "--timeout=60s")
        pod_ip = get_json(k, "pods", "-l", "app=web")["items"][0]["status"]["podIP"]
        pod_port = 80 if args.backend == "nginx" else 8080
        node_ip = c.node_ip(1)
        wait_for(lambda: try_get(node_ip, HTTP, HOST)[0] == 200, timeout=30, what="the backend through the Ingress")
        direct_url, ingress_url = f"http://{pod_ip}:{pod_port}/", f"http://{node_ip}:{HTTP}/"
        wrk(direct_url, 1, args.connections)  # warm both paths up
        wrk(ingress_url, 1, args.connections)
        direct, through = [], []
        for i in range(args.runs):
            sides = [(direct, direct_url), (through, ingress_url)]
            for results, url in sides if i % 2 == 0 else reversed(sides):
                results.append(wrk(url, args.duration, args.connections))
                time.sleep(0.5)
        k.close()
    d, t = statistics.median(direct), statistics.median(through)
    print(f"ingress keep-alive, {args.runtime} runtime, backend {args.backend}, wrk -t1 -c{args.connections} x {args.duration}s, "
          f"{args.runs} runs (median)")
    print(f"  direct to the pod  {d:9.0f} rps   through the Ingress {t:9.0f} rps   ratio {100 * t / d:5.1f}%")
    print(f"  runs: direct {[round(x) for x in direct]}, Ingress {[round(x) for x in through]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
