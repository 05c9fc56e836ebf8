"""`pocketkube logs [COMPONENT] [-f]`: the log files `up` writes under DATA_DIR/logs (each
child's stderr: server.log, controller-manager.log, node-N.log, dns.log, ingress.log; up.log
is the detached `up` itself)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

FIXED = ("server", "controller-manager", "dns", "ingress", "up")
DEFAULT = "server"


def components(log_dir: Path) -> list[str]:
    """The components with a log: the fixed ones present, then the nodes in number order."""
    present = {p.stem for p in log_dir.glob("*.log")}
    nodes = sorted((c for c in present if c.startswith("node-")),
                   key=lambda c: int(c[5:]) if c[5:].isdigit() else 1 << 30)
    return [c for c in FIXED if c in present] + nodes


def component_problem(component: str, available: list[str]) -> str:
    if component in available:
        return ""
    if not available:
        return "this cluster has no logs yet: start it with `pocketkube up`"
    return f"unknown component {component!r}; valid: {', '.join(available)}"


def show(log_dir: Path, component: str | None, follow: bool, out=None) -> int:
    out = out or sys.stdout
    available = components(log_dir)
    component = component or DEFAULT
    if problem := component_problem(component, available):
        print(f"pocketkube: {problem}", file=sys.stderr)
        return 1
    with (log_dir / f"{component}.log").open("rb") as f:
        while True:
            chunk = f.read(1 << 16)
            if chunk:
                out.buffer.write(chunk) if hasattr(out, "buffer") else out.write(chunk.decode(errors="replace"))
                continue
            if not follow:
                break
            out.flush()
            try:
                time.sleep(0.2)
            except KeyboardInterrupt:
                break
    out.flush()
    return 0
