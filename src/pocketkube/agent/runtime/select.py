"""Which container runtime a node uses: `--runtime auto|containerd|process`.

`auto` picks containerd when it can work — running as root with containerd, runc, the CNI plugins
and busybox (the pause image is built from it) installed — and otherwise the process runtime, the
rootless fallback. The choice comes with the reason `up` prints, so a user who expected real
containers learns what is missing. `choose_runtime` is pure; `missing_for_containerd` looks at
the host.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pocketkube.agent.runtime.containerd import DEBIAN_CNI_BIN_DIR

RUNTIMES = ("auto", "containerd", "process")
CNI_PLUGINS = ("bridge", "host-local", "portmap", "loopback")
# What containerd mode needs on the host, with the Debian package that provides it.
PROGRAMS = {"containerd": "containerd", "runc": "runc", "busybox": "busybox-static"}


@dataclass(frozen=True)
class RuntimeChoice:
    name: str  # "containerd" | "process"
    why: str


class RuntimeUnavailable(Exception):
    """`--runtime containerd` was asked for explicitly and cannot work here."""


def missing_for_containerd(which: Callable[[str], str | None] = shutil.which,
                           cni_bin_dir: Path = Path(DEBIAN_CNI_BIN_DIR)) -> list[str]:
    """The Debian packages whose programs are absent (empty when containerd mode can run)."""
    missing = [pkg for prog, pkg in PROGRAMS.items() if which(prog) is None]
    if not all(os.access(cni_bin_dir / p, os.X_OK) for p in CNI_PLUGINS):
        missing.append("containernetworking-plugins")
    return missing


def choose_runtime(requested: str, *, euid: int, missing: list[str], endpoint: str = "") -> RuntimeChoice:
    """The runtime for `requested`; RuntimeUnavailable when containerd was asked for and cannot run.

    An explicit `--container-runtime-endpoint` means a runtime someone else runs: only root
    (for the pod network) is needed then, not the packages.
    """
    if requested not in RUNTIMES:
        raise ValueError(f"unknown runtime {requested!r} (choose one of {', '.join(RUNTIMES)})")
    if endpoint and not endpoint.startswith("unix:///"):
        raise RuntimeUnavailable(f"--container-runtime-endpoint {endpoint!r} must be unix:///<absolute socket path>, "
                                 "e.g. unix:///run/containerd/containerd.sock")
    if requested == "process":
        if endpoint:
            raise RuntimeUnavailable("--container-runtime-endpoint needs --runtime containerd (or auto)")
        return RuntimeChoice("process", "asked for with --runtime process")
    if euid != 0:
        reason = "containerd mode needs root (pod network namespaces, bridges and mounts)"
        if requested == "containerd" or endpoint:
            raise RuntimeUnavailable(reason)
        return RuntimeChoice("process", f"not root: {reason}; pods run as host processes")
    if endpoint:
        return RuntimeChoice("containerd", f"the CRI runtime at {endpoint}")
    if missing:
        need = ", ".join(missing)
        if requested == "containerd":
            raise RuntimeUnavailable(f"containerd mode needs these Debian packages: {need} "
                                     f"(apt-get install {' '.join(missing)})")
        return RuntimeChoice("process", f"missing {need} (apt-get install {' '.join(missing)}); "
                                        "pods run as host processes")
    how = "asked for with --runtime containerd" if requested == "containerd" else "root, and containerd is installed"
    return RuntimeChoice("containerd", f"{how}; every node runs its own containerd")
