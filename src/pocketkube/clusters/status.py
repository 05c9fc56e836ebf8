"""`pocketkube status` and `pocketkube list`: read the state files, ask each running cluster for
its nodes (one short request each, in parallel). Only the standard library and yaml on this path."""

from __future__ import annotations

import json
import ssl
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from pocketkube.clusters import names, state
from pocketkube.util.durations import human_duration

PROBE_TIMEOUT = 1.0
COLUMNS = ("NAME", "STATE", "API", "NODES", "RUNTIME", "DATAPLANE", "UPTIME")


@dataclass(frozen=True)
class Row:
    name: str
    state: str
    api: str
    nodes: str
    runtime: str
    dataplane: str
    uptime: str


def ready_count(nodes: dict) -> tuple[int, int]:
    """(Ready, total) of a NodeList."""
    items = nodes.get("items") or []
    ready = sum(1 for n in items if any(c.get("type") == "Ready" and c.get("status") == "True"
                                        for c in (n.get("status") or {}).get("conditions") or []))
    return ready, len(items)


def render(rows: list[Row]) -> str:
    """A kubectl-style table: columns padded to their widest cell, three spaces apart."""
    table = [COLUMNS, *((r.name, r.state, r.api, r.nodes, r.runtime, r.dataplane, r.uptime) for r in rows)]
    widths = [max(len(row[i]) for row in table) for i in range(len(COLUMNS))]
    return "\n".join("   ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in table)


def _admin(data_dir: Path) -> tuple[str, str]:
    import yaml

    config = yaml.safe_load((data_dir / "kubeconfig").read_text())
    return config["clusters"][0]["cluster"]["server"], config["users"][0]["user"]["token"]


def probe(data_dir: Path) -> tuple[str, str]:
    """(API URL, "ready/total") of a running cluster; "?" when it does not answer in time."""
    try:
        url, token = _admin(data_dir)
    except (OSError, KeyError, IndexError, TypeError, ValueError):
        return "", "?"
    try:
        ctx = ssl.create_default_context(cafile=str(data_dir / "pki" / "ca.crt"))
        req = urllib.request.Request(f"{url}/api/v1/nodes", headers={"Authorization": f"Bearer {token}",
                                                                    "Accept": "application/json"})
        with urllib.request.urlopen(req, timeout=PROBE_TIMEOUT, context=ctx) as resp:
            ready, total = ready_count(json.loads(resp.read()))
        return url, f"{ready}/{total}"
    except (OSError, ValueError, ssl.SSLError):
        return url, "?"


def rows(clusters: dict[str, Path], now: float | None = None) -> list[Row]:
    from pocketkube.clusters.lifecycle import clean_if_stale

    now = time.time() if now is None else now
    states = {name: clean_if_stale(name, path) for name, path in clusters.items()}
    running = {name: clusters[name] for name, st in states.items() if st is not None}
    with ThreadPoolExecutor(max_workers=max(1, len(running))) as pool:
        probes = dict(zip(running, pool.map(probe, running.values())))
    out = []
    for name, path in clusters.items():
        st = states[name]
        plan = state.read_plan(path) or {}
        if st is None:
            api = f"https://127.0.0.1:{plan['port']}" if plan.get("port") else "-"
            out.append(Row(name, "Stopped", api, "-", plan.get("runtime", "-"), "-", "-"))
            continue
        url, nodes = probes[name]
        out.append(Row(name, "Running", url or f"https://{st.host}:{st.port}", nodes, st.runtime, st.dataplane,
                       human_duration(now - st.started_at)))
    return out


def status(default_dir: Path, name: str | None) -> int:
    clusters = names.known_dirs(default_dir)
    if name is not None:
        path = names.data_dir_for(name, default_dir)
        if name not in clusters:
            print(f"pocketkube: no cluster named {name!r} (start it with `pocketkube up --name {name}`)",
                  file=sys.stderr)
            return 1
        clusters = {name: path}
    if not clusters:
        print("No clusters found. Start one with `pocketkube up -d`.")
        return 0
    print(render(rows(clusters)), flush=True)
    return 0


def list_clusters(default_dir: Path) -> int:
    clusters = names.known_dirs(default_dir)
    if not clusters:
        print("No clusters found.", flush=True)  # as `kind get clusters`
        return 0
    print("\n".join(clusters), flush=True)
    return 0
