"""The live map's speed (issue 12) on a real cluster in Debian's Chromium: how fast a pod change
reaches an open page, how regular the 1 s traffic ticks are, how long 3 x 50 pods take to draw,
and what 20 open pages cost the API server.

One `pocketkube up` (process runtime, 3 nodes 127.221.5.x, pods 127.222.x, Services 127.223.x,
load balancers 127.224.0.x: the ranges of tests/e2e/test_ui_browser.py's nftables cluster, so
do not run the two at once) with the seed (3 nginx pods, NodePort 30008).
- change -> page: a pod leaves and rejoins the Service (its `type` label removed and put back,
  alternately: the endpoint controller rewrites the EndpointSlice); timed from the PATCH's
  answer to (a) the `topology` event at a plain SSE client (the API side: endpoint controller,
  the server's watch and ~100 ms debounce, SSE) and (b) the page's DOM showing it (a
  MutationObserver in the page; the page's clock is the host's).
- ticks: the page's `pk-tick` measures (a PerformanceObserver) over a minute: spacing vs 1 s.
- scale: navigation -> every pod drawn, 3 x 50 pause pods vs the seed's 3 (the baseline).
- cost: API server CPU seconds (utime + stime of its process, /proc/<pid>/stat) per minute with 20
  open map pages vs none (and vs one: the counter collection is paid once, by the first page),
  under the seed's load (a steady loop of new connections to the NodePort); the sides alternate,
  so drift hits them alike.

    .venv/bin/python bench/ui.py [--plane nftables|userspace] [--changes 50] [--tick-seconds 60]
        [--loads 5] [--cost-pairs 3] [--cost-seconds 30] [--out FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests" / "e2e"), str(ROOT / "tests" / "integration")]
from ui_browser_helpers import Api, connect, create_seed, goto, logged_in, open_map  # noqa: E402
from uiserver_helpers import SSE  # noqa: E402

from pocketkube.proxy.select import nftables_usable  # noqa: E402
from pocketkube.testing import browser  # noqa: E402
from pocketkube.testing.procs import preferred_kubectl, running_cluster  # noqa: E402
from pocketkube.testing.waits import wait_for  # noqa: E402

RANGES = {"node_ip_base": "127.221.5.0", "pod_cidr_base": "127.222.0.0/16", "service_cidr": "127.223.0.0/16",
          "lb_pool": "127.224.0.0/24"}

# Each change of the set of pods on the map, with the page's epoch time in ms.
OBSERVE_PODS = """() => {
  window.__pkPods = [];
  const svg = document.querySelector('[data-testid=map]');
  const now = () => performance.timeOrigin + performance.now();
  let last = '';
  new MutationObserver(() => {
    const pods = [...svg.querySelectorAll('[data-testid=pod]')].map(p => p.dataset.pod).sort().join(',');
    if (pods !== last) { last = pods; window.__pkPods.push([now(), pods]); }
  }).observe(svg, {childList: true, subtree: true, attributes: true, attributeFilter: ['data-pod']});
}"""
OBSERVE_TICKS = """() => {
  window.__pkTicks = [];
  new PerformanceObserver(list => { for (const e of list.getEntries())
    if (e.name === 'pk-tick') window.__pkTicks.push(e.startTime); }).observe({type: 'measure'});
}"""


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, round(p / 100 * len(xs) + 0.5) - 1))]


def patch_labels(api: Api, pod: str, labels: dict) -> None:
    req = urllib.request.Request(f"{api.cluster.url}/api/v1/namespaces/default/pods/{pod}", method="PATCH",
                                 data=json.dumps({"metadata": {"labels": labels}}).encode(),
                                 headers={"Authorization": f"Bearer {api.token}",
                                          "Content-Type": "application/merge-patch+json"})
    urllib.request.urlopen(req, timeout=5, context=api.ctx).read()


def change_latency(cluster, api: Api, page, changes: int) -> list[str]:
    page.evaluate(OBSERVE_PODS)
    sse = SSE(int(cluster.url.rsplit(":", 1)[1]), str(cluster.data_dir / "pki" / "ca.crt"),
              "/ui/api/v1/stream?namespace=default&service=myapp-service",
              {"Authorization": f"Bearer {api.token}", "Accept": "text/event-stream"})
    try:
        sse.next("snapshot")
        pod = sorted(api.pods("app=myapp"))[0]
        to_sse, to_dom = [], []
        for i in range(changes):
            leaving = i % 2 == 0
            t0 = time.time()
            patch_labels(api, pod, {"type": None} if leaving else {"type": "front-end"})
            t1, mono1 = time.time(), time.monotonic()
            ev = sse.next("topology", timeout=10, where=lambda e: (pod in json.dumps(e.data)) != leaving)
            to_sse.append((ev.at - mono1) * 1000)

            def shown():
                for at, pods in page.evaluate("() => window.__pkPods"):
                    if at / 1000 >= t0 and (pod in pods.split(",")) != leaving:
                        return at
                return None
            at = wait_for(shown, timeout=10, interval=0.01, what=f"change {i} on the page")
            to_dom.append(at - t1 * 1000)
        return [f"pod change -> page ({changes} changes: a pod leaves / rejoins the Service; from the PATCH's answer)",
                f"  API side (topology event at an SSE client): p50 {pct(to_sse, 50):6.1f} ms  p99 {pct(to_sse, 99):6.1f} ms",
                f"  page DOM updated:                          p50 {pct(to_dom, 50):6.1f} ms  p99 {pct(to_dom, 99):6.1f} ms"
                f"   (target p99 <= 500 ms; page minus SSE client p50 "
                f"{statistics.median([d - s for d, s in zip(to_dom, to_sse, strict=True)]):.1f} ms)"]
    finally:
        sse.close()


def tick_spacing(page, seconds: float) -> list[str]:
    page.evaluate(OBSERVE_TICKS)
    page.wait_for_timeout(seconds * 1000)
    ticks = page.evaluate("() => window.__pkTicks")
    gaps = [b - a for a, b in zip(ticks, ticks[1:], strict=False)]
    dev = [abs(g - 1000) for g in gaps]
    return [f"traffic ticks at the page ({len(gaps)} intervals over {seconds:.0f} s): mean {statistics.mean(gaps):.1f} ms,"
            f" |deviation from 1 s| mean {statistics.mean(dev):.1f} ms, p99 {pct(dev, 99):.1f} ms (target ±100 ms)"]


def draw_time(context, cluster, route: str, count: int, loads: int) -> list[float]:
    page = browser.open_page(context)
    took = []
    while len(took) < loads:
        page.goto("about:blank")
        goto(page, cluster.url + "/ui/" + route)
        try:
            page.wait_for_function("n => document.querySelectorAll('[data-testid=pod]').length === n", arg=count,
                                   timeout=20000)
        except Exception:   # noqa: BLE001 - report it and load again
            print(f"  (a load of {route} did not draw {count} pods in 20 s: {browser.problems(page)})", flush=True)
            continue
        took.append(page.evaluate("performance.now()"))
    browser.assert_clean(page)
    page.close()
    return took


def server_cpu(cluster) -> float:
    pid = next(int(e) for e in os.listdir("/proc") if e.isdigit() and _is_server(e, cluster))
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _is_server(pid: str, cluster) -> bool:
    try:
        argv = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
    except OSError:
        return False
    return b"server" in argv and str(cluster.data_dir).encode() in argv


def page_cost(chromium, cluster, node_ip: str, pairs: int, seconds: float) -> list[str]:
    stop = threading.Event()

    def load():   # the seed's load: a steady loop of new connections, ~20 a second
        while not stop.is_set():
            with contextlib.suppress(OSError):
                connect(node_ip, 30008, 1)
            stop.wait(0.05)
    loader = threading.Thread(target=load, daemon=True)
    loader.start()
    per_min = {0: [], 1: [], 20: []}
    # Chromium keeps at most 6 HTTP/1.1 connections per host in a profile and every open page
    # holds one for its stream: 20 pages are 4 browser contexts (own socket pools) of 5.
    contexts = contextlib.ExitStack()
    try:
        pools = [contexts.enter_context(logged_in(chromium, cluster, reduced_motion="reduce")) for _ in range(4)]
        for i in range(pairs):
            for n in ((0, 1, 20) if i % 2 == 0 else (20, 1, 0)):
                pages = [open_map(pools[j % 4], cluster) for j in range(n)]
                time.sleep(2)   # settle: the pages' loads are not part of the steady cost
                c0, t0 = server_cpu(cluster), time.monotonic()
                time.sleep(seconds)
                per_min[n].append((server_cpu(cluster) - c0) / (time.monotonic() - t0) * 60)
                for p in pages:
                    browser.assert_clean(p)
                    p.close()
    finally:
        stop.set()
        loader.join(5)
        contexts.close()
    base, one, many = (statistics.median(per_min[n]) for n in (0, 1, 20))
    return [f"API server CPU under the seed's load (~20 new connections/s), {pairs} x {seconds:.0f} s per side, medians",
            f"  0 pages {base:.2f}   1 page {one:.2f}   20 pages {many:.2f} CPU s/min;   20 vs 0: ratio {many / base:.2f}"
            f" (+{(many - base) / 60 * 100:.2f} % of a core; target ratio <= 1.10),   20 vs 1: ratio {many / one:.2f}",
            f"  (runs: {json.dumps({n: [round(x, 2) for x in v] for n, v in per_min.items()})})"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--plane", choices=["nftables", "userspace"],
                    default="nftables" if os.geteuid() == 0 and nftables_usable() else "userspace")
    ap.add_argument("--changes", type=int, default=50)
    ap.add_argument("--tick-seconds", type=float, default=60)
    ap.add_argument("--loads", type=int, default=5)
    ap.add_argument("--cost-pairs", type=int, default=3)
    ap.add_argument("--cost-seconds", type=float, default=30)
    ap.add_argument("--out", type=Path, default=None, help="also append the report here")
    args = ap.parse_args()
    if not browser.available():
        sys.exit(f"needs {browser.HINT}")
    report = [f"# {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC, {args.plane} data plane, load average "
              f"{os.getloadavg()[0]:.1f}"]

    def say(lines: list[str]) -> None:
        report.extend(lines)
        print("\n".join(lines), flush=True)

    with running_cluster("pk-bench-ui-", nodes=3, extra_args=["--dataplane", args.plane, "--no-dns"],
                         **RANGES) as cluster, browser.launch_browser() as chromium:
        k = preferred_kubectl(cluster.kubeconfig)
        k.cwd = ROOT
        api = Api(cluster)
        try:
            create_seed(k)
            wait_for(lambda: len(api.ready_endpoints("myapp-service")) == 3, timeout=60, what="the seed Ready")
            with logged_in(chromium, cluster, reduced_motion="reduce") as context:
                page = open_map(context, cluster)
                page.wait_for_function("() => document.querySelectorAll('[data-testid=pod]').length === 3")
                say(change_latency(cluster, api, page, args.changes))
                say(tick_spacing(page, args.tick_seconds))
                browser.assert_clean(page)
                page.close()
                seed = draw_time(context, cluster, "#/map/default/myapp-service", 3, args.loads)
                k.ok("create", "deployment", "many", "--image=pause", "--replicas=150")
                k.ok("create", "service", "clusterip", "many", "--tcp=80:80")
                wait_for(lambda: len(api.ready_endpoints("many")) == 150, timeout=300, interval=0.5,
                         what="150 pause pods Ready")
                many = draw_time(context, cluster, "#/map/default/many", 150, args.loads)
                k.ok("delete", "deployment", "many", "--wait=false")
                say([f"navigation -> drawn, median of {args.loads} loads: 3 x 50 pods {statistics.median(many):.0f} ms,"
                     f" the seed's 3 pods (baseline) {statistics.median(seed):.0f} ms, ratio"
                     f" {statistics.median(many) / statistics.median(seed):.2f} (target <= 2000 ms; runs {[round(x) for x in many]}"
                     f" vs {[round(x) for x in seed]})"])
                say(page_cost(chromium, cluster, cluster.node_ip(1), args.cost_pairs, args.cost_seconds))
        finally:
            k.close()
    if args.out:
        with args.out.open("a") as f:
            f.write("\n".join(report) + "\n\n")


if __name__ == "__main__":
    main()
