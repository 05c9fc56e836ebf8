"""Wiring for `pocketkube lb`: kubectl (or anything with one kubeconfig server) through whichever
of several API servers is up (net/tcplb.py)."""

from __future__ import annotations

import asyncio
import signal
import sys
from urllib.parse import urlsplit

from pocketkube.net.tcplb import Balancer, Target


def targets_of(servers: str) -> list[Target]:
    """`https://a:6443,https://b:6443` (already checked by the flag's parser) → [(a, 6443), (b, 6443)]."""
    out = []
    for url in servers.split(","):
        parts = urlsplit(url)
        out.append((parts.hostname or "", parts.port or 443))
    return out


def parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected HOST:PORT, e.g. 127.0.0.1:6444, got {value!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


async def run(listen: tuple[str, int], servers: str) -> int:
    balancer = Balancer(targets_of(servers))
    try:
        port = await balancer.start(*listen)
    except OSError as e:
        print(f"pocketkube lb: cannot listen on {listen[0]}:{listen[1]}: {e.strerror or e}", file=sys.stderr)
        return 1
    where = f"https://{listen[0]}:{port}"
    print(f"• forwarding {listen[0]}:{port} to {', '.join(f'{h}:{p}' for h, p in balancer.targets)} "
          "(the first that answers)", flush=True)
    print(f"  point a kubeconfig at it: kubectl config set-cluster CLUSTER --server={where}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await balancer.close()
    return 0
