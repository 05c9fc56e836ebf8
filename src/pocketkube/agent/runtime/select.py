"""Which container runtime a node uses: `--runtime auto|containerd|process`.

`auto` picks containerd when it can work — running as root with containerd, runc, the CNI plugins
and busybox (the pause image is built from it) installed — and otherwise the process runtime, the
rootless fallback. `choose_runtime` is pure: what is missing comes from `pocketkube.doctor`'s
facts (doctor.mode.containerd_missing), which also words the line `up` prints.
"""

from __future__ import annotations

from dataclasses import dataclass

RUNTIMES = ("auto", "containerd", "process")
CNI_PLUGINS = ("bridge", "host-local", "portmap", "loopback")  # looked up in cni.DEBIAN_CNI_BIN_DIR


@dataclass(frozen=True)
class RuntimeChoice:
    name: str  # "containerd" | "process"
    why: str


class RuntimeUnavailable(Exception):
    """`--runtime containerd` was asked for explicitly and cannot work here."""


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
