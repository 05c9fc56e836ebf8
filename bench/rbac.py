"""RBAC authorizer benchmark (issue 10): GET latency of a user authorized by RBAC against the
same GET decided by an always-allow authorizer, in the same run against the same server.

The always-allow side is system:masters, which the authorizer chain admits before consulting
anything (upstream's privileged-group authorizer): its requests differ from the RBAC user's
only in the bearer token, so the difference between the two is the RBAC decision itself. The
server holds a few hundred bindings (RoleBindings in many namespaces, ClusterRoleBindings to
other users and groups); the RBAC user is bound through a group RoleBinding. In each round both
sides send their GETs at once, from as many clients each, so both meet the same load. Run:

    .venv/bin/python bench/rbac.py [--bindings 400] [--requests 20000] [--rounds 6]
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
import orjson

from pocketkube.apiserver.pki import PKI
from pocketkube.testing.procs import ServerProcess

G = "rbac.authorization.k8s.io"
PATH = "/api/v1/namespaces/default/services/kubernetes"


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


async def seed(session: aiohttp.ClientSession, bindings: int) -> None:
    async def post(path: str, body: dict) -> None:
        async with session.post(path, data=orjson.dumps(body), headers={"Content-Type": "application/json"}) as r:
            assert r.status == 201, (r.status, await r.text())
    namespaces = [f"team-{i}" for i in range(max(1, bindings // 8))]
    await asyncio.gather(*(post("/api/v1/namespaces", {"metadata": {"name": n}}) for n in namespaces))
    reader = {"metadata": {"name": "reader"}, "rules": [
        {"verbs": ["get", "list", "watch"], "apiGroups": [""], "resources": ["services", "pods", "configmaps"]}]}
    await post(f"/apis/{G}/v1/clusterroles", reader)
    ref = {"apiGroup": G, "kind": "ClusterRole", "name": "reader"}
    posts = []
    for i in range(bindings):
        subject = {"apiGroup": G, "kind": "User" if i % 2 else "Group", "name": f"someone-{i}"}
        if i % 4 == 0:
            posts.append(post(f"/apis/{G}/v1/clusterrolebindings",
                              {"metadata": {"name": f"crb-{i}"}, "roleRef": ref, "subjects": [subject]}))
        else:
            ns = namespaces[i % len(namespaces)]
            posts.append(post(f"/apis/{G}/v1/namespaces/{ns}/rolebindings",
                              {"metadata": {"name": f"rb-{i}"}, "roleRef": ref, "subjects": [subject]}))
    posts.append(post(f"/apis/{G}/v1/namespaces/default/rolebindings", {
        "metadata": {"name": "devs-read"}, "roleRef": ref, "subjects": [{"apiGroup": G, "kind": "Group",
                                                                         "name": "devs"}]}))
    for i in range(0, len(posts), 50):
        await asyncio.gather(*posts[i:i + 50])


async def closed_loop(session: aiohttp.ClientSession, tokens: dict[str, str], n: int,
                      concurrency: int) -> dict[str, list[float]]:
    """n GETs from `concurrency` clients per side, both sides at once (so that both meet the
    same load); each side's latencies."""
    latencies: dict[str, list[float]] = {side: [] for side in tokens}

    async def client(side: str, counter) -> None:
        headers = {"Authorization": f"Bearer {tokens[side]}"}
        for _ in counter:
            t0 = time.perf_counter()
            async with session.get(PATH, headers=headers) as r:
                assert r.status == 200, (r.status, await r.text())
                await r.read()
            latencies[side].append(time.perf_counter() - t0)
    counters = {side: iter(range(n)) for side in tokens}
    await asyncio.gather(*(client(side, counters[side]) for side in tokens for _ in range(concurrency)))
    return latencies


async def run(args: argparse.Namespace) -> dict[str, list[float]]:
    root = Path(tempfile.mkdtemp(prefix="pk-bench-rbac-"))
    server = ServerProcess(root / "data", extra_args=["--no-control-plane"])
    server.data_dir.mkdir(parents=True)
    pki = PKI(server.data_dir)
    pki.ensure(["127.0.0.1"])
    rbac_token = pki.user_token("alice", ["devs"])
    server.start()
    ctx = ssl.create_default_context(cafile=str(server.ca_file))
    session = aiohttp.ClientSession(base_url=server.url, connector=aiohttp.TCPConnector(ssl=ctx, limit=200))
    try:
        admin = server.token()
        async with session.get("/version") as r:
            await r.read()
        seeded = aiohttp.ClientSession(base_url=server.url, headers={"Authorization": f"Bearer {admin}"},
                                       connector=aiohttp.TCPConnector(ssl=ctx, limit=100))
        try:
            await seed(seeded, args.bindings)
        finally:
            await seeded.close()
        sides = {"always-allow": admin, "rbac": rbac_token}
        await closed_loop(session, sides, 2000, args.concurrency)  # warm up both paths
        out: dict[str, list[float]] = {k: [] for k in sides}
        for _ in range(args.rounds):
            for side, lat in (await closed_loop(session, sides, args.requests, args.concurrency)).items():
                out[side].append(pct(lat, 99))
                out.setdefault(side + " p50", []).append(pct(lat, 50))
        return out
    finally:
        await session.close()
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--bindings", type=int, default=400)
    p.add_argument("--requests", type=int, default=20000)
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--concurrency", type=int, default=16, help="clients per side")
    args = p.parse_args()
    out = asyncio.run(run(args))
    base, rbac = statistics.median(out["always-allow"]), statistics.median(out["rbac"])
    print(f"bindings={args.bindings}+bootstrap rounds={args.rounds} requests/round={args.requests} "
          f"clients={args.concurrency} per side")
    b50, r50 = statistics.median(out["always-allow p50"]), statistics.median(out["rbac p50"])
    print(f"GET always-allow (system:masters): p50 {b50 * 1000:.2f} ms p99 {base * 1000:.2f} ms (medians of rounds)")
    print(f"GET RBAC (group RoleBinding):      p50 {r50 * 1000:.2f} ms ({r50 / b50:.3f}x) "
          f"p99 {rbac * 1000:.2f} ms ({rbac / base:.3f}x)   target p99 <= 1.10x")


if __name__ == "__main__":
    main()
