"""`pocketkube image load` benchmark (issue 9): a ~75 MB archive into 1 and 3 nodes vs `ctr images import`.

The archive is a `docker save` one (layers stored uncompressed, as docker writes them) of one
image whose layer holds --size MB of deterministic pseudo-random, incompressible bytes in 4 files.
Three private containerds run as the agents run them (`<data>/nodes/node-{1,2,3}/containerd`).

Measured, each a median over --runs, the runs of the different kinds interleaved (rotating order):
- baseline: `ctr -n k8s.io images import FILE` into ONE node's containerd (node-1), the figure the
  issue's target is stated against;
- `pocketkube image load --data-dir D FILE` (a whole CLI process) for a cluster of 1 node and
  one of 3 nodes (the 1-node cluster is node-1 alone: a data dir whose nodes/ links to it);
- for reference, the same work done by ctr alone: ctr import into the 3 nodes at once, and ctr
  import --no-unpack into one node (what unpacking costs).
Before every run every image is removed from every node and containerd's GC run (`images rm
--sync`; no content may remain), so every run writes all content and unpacks all layers again.

    .venv/bin/python bench/image_load.py [--runs 5] [--size 75] [--out bench/results-image-load.txt]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

from pocketkube.agent.runtime.containerd import Containerd
from pocketkube.testing import archives

IMAGE = "pk-bench/image-load:1"
NODES = 3
TARGET = 1.5


def ctr(node: Containerd, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ctr", "-a", str(node.socket), "-n", "k8s.io", *args],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=check)


def build_archive(path: Path, size_mb: int) -> None:
    layer = archives.random_layer(size_mb * 2**20, seed=9)
    archives.docker_archive_from_layers(path, config=archives.image_config([layer]), layers=[layer],
                                        repo_tags=[IMAGE])


def clear(nodes: list[Containerd]) -> None:
    for node in nodes:
        # Every name: CRI adds one of its own (the image ID) to each image it sees.
        refs = subprocess.run(["ctr", "-a", str(node.socket), "-n", "k8s.io", "images", "ls", "-q"],
                              capture_output=True, text=True, check=True).stdout.split()
        if refs:
            ctr(node, "images", "rm", "--sync", *refs)
        content = subprocess.run(["ctr", "-a", str(node.socket), "-n", "k8s.io", "content", "ls", "-q"],
                                 capture_output=True, text=True, check=True).stdout.split()
        assert not content, f"content left on {node.data_dir}: {content}"


def timed(argvs: list[list[str]]) -> float:
    """Wall time of running `argvs` all at once until the last one ends (each must succeed)."""
    start = time.monotonic()
    procs = [subprocess.Popen(a, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for a in argvs]
    for p, a in zip(procs, argvs):
        _, err = p.communicate()
        if p.returncode != 0:
            raise RuntimeError(f"{a} failed: {err.decode()}")
    return time.monotonic() - start


def cluster_view(tmp: Path, name: str, nodes: list[Containerd]) -> Path:
    """A data dir whose nodes/ are links to these nodes' dirs (what `image load` looks for)."""
    view = tmp / name
    (view / "nodes").mkdir(parents=True)
    for i, node in enumerate(nodes, 1):
        (view / "nodes" / f"node-{i}").symlink_to(node.data_dir.parent)
    return view


async def bench(runs: int, size_mb: int) -> tuple[dict[str, list[float]], int]:
    tmp = Path(tempfile.mkdtemp(prefix="pk-bench-img-"))
    nodes = [Containerd(tmp / "data" / "nodes" / f"node-{i}" / "containerd", sandbox_image="pause:bench")
             for i in range(1, NODES + 1)]
    try:
        archive = tmp / "image.tar"
        build_archive(archive, size_mb)
        await asyncio.gather(*(n.start() for n in nodes))
        one, three = cluster_view(tmp, "c1", nodes[:1]), cluster_view(tmp, "c3", nodes)
        pk = [sys.executable, "-m", "pocketkube", "image", "load", "--data-dir"]
        import_ = ["images", "import"]
        kinds = {
            "ctr import, 1 node (baseline)": lambda: [["ctr", "-a", str(nodes[0].socket), "-n", "k8s.io",
                                                       *import_, str(archive)]],
            "pocketkube image load, 1 node": lambda: [[*pk, str(one), str(archive)]],
            f"pocketkube image load, {NODES} nodes": lambda: [[*pk, str(three), str(archive)]],
            f"ctr import into {NODES} nodes at once": lambda: [["ctr", "-a", str(n.socket), "-n", "k8s.io",
                                                               *import_, str(archive)] for n in nodes],
            "ctr import --no-unpack, 1 node": lambda: [["ctr", "-a", str(nodes[0].socket), "-n", "k8s.io",
                                                        *import_, "--no-unpack", str(archive)]],
        }
        times: dict[str, list[float]] = {k: [] for k in kinds}
        names = list(kinds)
        clear(nodes)
        timed(kinds[names[0]]())  # warm the page cache and the binaries; not counted
        for r in range(runs):
            for k in names[r % len(names):] + names[:r % len(names)]:
                clear(nodes)
                times[k].append(timed(kinds[k]()))
        clear(nodes)
        return times, archive.stat().st_size
    finally:
        await asyncio.gather(*(n.stop() for n in nodes))
        shutil.rmtree(tmp, ignore_errors=True)


def report(times: dict[str, list[float]], size: int, runs: int) -> str:
    med = {k: statistics.median(v) for k, v in times.items()}
    base = med["ctr import, 1 node (baseline)"]
    lines = [f"bench/image_load.py --runs {runs} ({date.today()}, {os.cpu_count()} cores; medians; "
             f"a {size / 2**20:.0f} MiB docker-save archive, one uncompressed layer of random bytes)"]
    for k, m in med.items():
        target = f"   target <= {TARGET}x" if k.startswith("pocketkube") else ""
        lines.append(f"{k}: {m * 1e3:.0f} ms ({m / base:.2f}x){target}")
    lines.append("(x = ratio to the baseline, ctr images import into ONE node; every run starts from no content)")
    for k, v in times.items():
        lines.append(f"  {k}: " + " ".join(f"{t * 1e3:.0f}" for t in v) + " ms")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--size", type=int, default=75, help="layer size in MiB (default: %(default)s)")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results-image-load.txt")
    args = p.parse_args()
    if os.geteuid() != 0 or not shutil.which("containerd") or not shutil.which("ctr"):
        sys.exit("bench/image_load.py needs root, containerd and ctr (apt-get install containerd runc)")
    times, size = asyncio.run(bench(args.runs, args.size))
    text = report(times, size, args.runs)
    print(text, end="")
    args.out.write_text(text)


if __name__ == "__main__":
    main()
