"""Service-account token authentication cost: the p50/p99 of an authenticated GET (/api/v1)
with a bound service-account JWT, against the same GET with the admin's static token (the
baseline) in the same run on the same server (`--no-control-plane`). Run:

    .venv/bin/python bench/tokens.py [--requests 3000] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import ssl
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp

from pocketkube.testing.procs import ServerProcess


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


async def latencies(session: aiohttp.ClientSession, token: str, n: int) -> list[float]:
    out = []
    headers = {"Authorization": f"Bearer {token}"}
    for _ in range(n):
        t0 = time.perf_counter()
        async with session.get("/api/v1", headers=headers) as r:
            await r.read()
            assert r.status == 200, r.status
        out.append(time.perf_counter() - t0)
    return out


async def run_once(n: int) -> dict:
    root = Path(tempfile.mkdtemp(prefix="pk-bench-tokens-"))
    server = ServerProcess(root / "data", extra_args=["--no-control-plane"])
    server.data_dir.mkdir()
    server.start()
    try:
        ctx = ssl.create_default_context(cafile=str(server.ca_file))
        admin = server.token()
        async with aiohttp.ClientSession(base_url=server.url, connector=aiohttp.TCPConnector(ssl=ctx)) as s:
            auth = {"Authorization": f"Bearer {admin}"}
            async with s.post("/api/v1/namespaces/default/serviceaccounts", headers=auth,
                              json={"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "b"}}) as r:
                assert r.status == 201
            async with s.post("/api/v1/namespaces/default/serviceaccounts/b/token", headers=auth,
                              json={"spec": {}}) as r:
                sa_token = (await r.json())["status"]["token"]
            await latencies(s, admin, 200)  # warm up both paths
            await latencies(s, sa_token, 200)
            base, jwt_ = [], []
            for _ in range(3):  # interleaved, so drift hits both alike
                base += await latencies(s, admin, n // 3)
                jwt_ += await latencies(s, sa_token, n // 3)
        return {"base_p50": pct(base, 50), "base_p99": pct(base, 99), "jwt_p50": pct(jwt_, 50),
                "jwt_p99": pct(jwt_, 99)}
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    results = [asyncio.run(run_once(args.requests)) for _ in range(args.runs)]
    med = {k: statistics.median(r[k] for r in results) for k in results[0]}
    print(f"GET /api/v1, static admin token (baseline): p50 {med['base_p50'] * 1e3:.2f} ms, "
          f"p99 {med['base_p99'] * 1e3:.2f} ms")
    print(f"GET /api/v1, service-account JWT: p50 {med['jwt_p50'] / med['base_p50']:.2f}x, "
          f"p99 {med['jwt_p99'] / med['base_p99']:.2f}x the baseline")


if __name__ == "__main__":
    main()
