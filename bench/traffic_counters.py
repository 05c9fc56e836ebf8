"""What traffic counting costs (issue 12): NodePort rps with counters on vs off, and sync latency.

Throughput: 3 nginx pods (127.202.5.2-4:80, bench/dataplane.py's minimal config) behind a
NodePort (127.201.5.1:30008), `wrk` at the NodePort. For each data plane, runs alternate
between counting on and off (the order flips every run, so drift hits both sides alike), each
run on a freshly started plane with the same backends; during "on" runs the counters are
collected at 1 Hz (`plane.traffic()`, what the agent's /proxy/traffic does for the live map).
Reported: medians, their ratio, and the median of per-pair ratios, keep-alive and with a new
connection per request (the case counters touch: nft counts the first packet of a connection).
- nftables off: the uncounted table (inline numgen DNAT); on: endpoint chains with a named
  counter before each DNAT, counter maps before the verdict maps.
- userspace: its counts are plain ints always kept (an add per chunk and per connection), so
  "off" differs from "on" by the collection only.

Sync latency (nftables): 1,000 Services x 10 endpoints programmed, then 100 single-endpoint
changes, counting on vs off (interleaved per change on two tables); and one counter read of
that table (the 1 Hz collection's cost at that size).

    .venv/bin/python bench/traffic_counters.py [--plane nftables|userspace|both] [--runs 7]
        [--duration 3] [--skip-throughput] [--skip-latency] [--out FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import signal
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import dataplane as dp  # noqa: E402 - the sibling bench's pods, wrk and sysctl helpers

from pocketkube.proxy.model import Endpoint, Model, ServiceEntry, ServicePort  # noqa: E402

PODS = ["127.202.5.2", "127.202.5.3", "127.202.5.4"]
NODE_NAME, NODE_IP, NODE_PORT, CLUSTER_IP = "bench-ctr-1", "127.201.5.1", 30008, "127.203.5.8"
CONNECTIONS = 50


def make_plane(kind: str, count: bool, node_name: str = NODE_NAME, node_ip: str = NODE_IP):
    if kind == "nftables":
        from pocketkube.proxy.nftables.proxier import NftablesDataPlane

        return NftablesDataPlane(node_name, node_ip, count_traffic=count)
    from pocketkube.proxy.userspace.proxier import UserspaceDataPlane

    return UserspaceDataPlane(node_name, node_ip)


def web_model() -> Model:
    sp = ServicePort("default", "myapp", "", "TCP", 80, (CLUSTER_IP,), NODE_PORT)
    eps = tuple(Endpoint(ip, 80, NODE_NAME, pod=f"myapp-{i}") for i, ip in enumerate(PODS))
    return {(sp.key, sp.protocol): ServiceEntry(sp, eps)}


async def _collect(plane, reads: list[float]) -> None:
    while True:
        t0 = time.perf_counter()
        await plane.traffic()
        reads.append(time.perf_counter() - t0)
        await asyncio.sleep(1.0)


async def one_run(kind: str, count: bool, close: bool, duration: int) -> tuple[float, list[float]]:
    plane = make_plane(kind, count)
    await plane.start()
    reads: list[float] = []
    collector = None
    try:
        await plane.apply(web_model())
        await asyncio.to_thread(dp._wait_http, NODE_IP, NODE_PORT)
        if count:
            collector = asyncio.create_task(_collect(plane, reads))
        rps = await asyncio.to_thread(dp.wrk, f"http://{NODE_IP}:{NODE_PORT}/", duration, close, CONNECTIONS)
        if count:
            snap = await plane.traffic()
            total = sum(e.connections for e in snap.entries if e.kind == "NodePort")
            if total == 0:
                raise RuntimeError(f"{kind}: counting on, but nothing was counted")
        return rps, reads
    finally:
        if collector is not None:
            collector.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await collector
        await plane.stop()


async def throughput(kind: str, runs: int, duration: int, out: list[str]) -> None:
    for close in (False, True):
        on, off, reads = [], [], []
        for i in range(runs):
            for count in ((True, False) if i % 2 == 0 else (False, True)):
                rps, r = await one_run(kind, count, close, duration)
                (on if count else off).append(rps)
                reads += r
        m_on, m_off = statistics.median(on), statistics.median(off)
        paired = statistics.median(a / b for a, b in zip(on, off, strict=True))
        label = "new connection per request" if close else "keep-alive"
        line = (f"  {kind:9s} {label:27s} off {m_off:9.0f} rps   on {m_on:9.0f} rps   on/off {m_on / m_off:6.1%}"
                f"   paired median {paired:6.1%}   (runs: off {[round(x) for x in off]}, on {[round(x) for x in on]};"
                f" counter read p50 {dp.pct(reads, 50) * 1e3:.2f} ms)")
        print(line, flush=True)
        out.append(line)


def big_model(services: int, endpoints: int, node: str) -> Model:
    model: Model = {}
    for s in range(services):
        sp = ServicePort("bench", f"svc-{s}", "http", "TCP", 80, (f"127.203.{100 + s // 250}.{s % 250 + 1}",),
                         31000 + s if s < 1000 else 0)
        eps = tuple(Endpoint(f"127.202.{100 + (s * endpoints + e) // 250 % 100}.{(s * endpoints + e) % 250 + 1}",
                             8080, node, pod=f"p{s}-{e}") for e in range(endpoints))
        model[(sp.key, sp.protocol)] = ServiceEntry(sp, eps)
    return model


async def sync_latency(services: int, endpoints: int, changes: int, out: list[str]) -> None:
    planes = {count: make_plane("nftables", count, f"bench-ctr-lat-{int(count)}", f"127.201.5.{10 + int(count)}")
              for count in (False, True)}
    rng = random.Random(12)
    try:
        models = {}
        initial = {}
        for count, plane in planes.items():
            await plane.start()
            models[count] = big_model(services, endpoints, plane.ctx.node_name)
            t0 = time.perf_counter()
            await plane.apply(models[count])
            initial[count] = time.perf_counter() - t0
        times: dict[bool, list[float]] = {False: [], True: []}
        for i in range(changes):
            key = rng.choice(list(models[False]))
            slot = rng.randrange(endpoints)
            order = (False, True) if i % 2 == 0 else (True, False)
            for count in order:
                entry = models[count][key]
                eps = list(entry.endpoints)
                eps[slot] = Endpoint(f"127.202.250.{i % 250 + 1}", 8080 + i // 250, planes[count].ctx.node_name,
                                     pod=f"new-{i}")
                models[count] = {**models[count], key: ServiceEntry(entry.port, tuple(sorted(eps)))}
                t0 = time.perf_counter()
                await planes[count].apply(models[count])
                times[count].append(time.perf_counter() - t0)
        reads = []
        for _ in range(5):
            t0 = time.perf_counter()
            snap = await planes[True].traffic()
            reads.append(time.perf_counter() - t0)
        lines = [f"  initial {services} Services x {endpoints} endpoints: off {initial[False]:.2f} s, "
                 f"on {initial[True]:.2f} s (ratio {initial[True] / initial[False]:.2f})"]
        for p in (50, 99):
            off, on = dp.pct(times[False], p), dp.pct(times[True], p)
            lines.append(f"  {changes} single-endpoint changes p{p}: off {off * 1e3:.1f} ms, on {on * 1e3:.1f} ms "
                         f"(ratio {on / off:.2f})")
        lines.append(f"  one counter read of that table ({len(snap.entries) + len(snap.endpoints) + len(snap.rejected)}"
                     f" counters): median {statistics.median(reads) * 1e3:.1f} ms")
        for line in lines:
            print(line, flush=True)
        out += lines
    finally:
        for plane in planes.values():
            await plane.stop()


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--plane", default="both", choices=["nftables", "userspace", "both"])
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--duration", type=int, default=3)
    ap.add_argument("--services", type=int, default=1000)
    ap.add_argument("--endpoints", type=int, default=10)
    ap.add_argument("--changes", type=int, default=100)
    ap.add_argument("--skip-throughput", action="store_true")
    ap.add_argument("--skip-latency", action="store_true")
    ap.add_argument("--out", type=Path, default=None, help="also write the report here")
    args = ap.parse_args()
    if os.geteuid() != 0 and args.plane != "userspace":
        sys.exit("bench/traffic_counters.py needs root for the nftables plane (or --plane userspace)")
    kinds = ["nftables", "userspace"] if args.plane == "both" else [args.plane]
    out: list[str] = []
    if not args.skip_throughput:
        head = (f"NodePort throughput, counting on vs off ({args.runs} runs x {args.duration} s each, "
                f"{CONNECTIONS} connections, medians; sysctls as bench/dataplane.py)")
        print(head, flush=True)
        out.append(head)
        with dp.sysctls(dp.TUNING), dp.nginx_pods(PODS):
            for kind in kinds:
                await throughput(kind, args.runs, args.duration, out)
    if not args.skip_latency and "nftables" in kinds:
        head = "nftables sync latency, counting on vs off (apply() -> live, one node)"
        print(head, flush=True)
        out.append(head)
        await sync_latency(args.services, args.endpoints, args.changes, out)
    if args.out:
        args.out.write_text("\n".join(out) + "\n")


if __name__ == "__main__":
    try:
        import uvloop  # the agent runs on uvloop too

        uvloop.install()
    except ImportError:
        pass
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    asyncio.run(main())
