"""The mode `up` runs in — runtime and data plane — from the doctor's facts, and the one line
that says which and why.

The decisions stay where they were (agent.runtime.select.choose_runtime, proxy.select.choose_kind);
this module feeds them the facts and words the outcome. `RuntimeUnavailable` (an explicit
`--runtime containerd` that cannot work) passes through to the caller.
"""

from __future__ import annotations

from dataclasses import dataclass

from pocketkube.agent.runtime.select import CNI_PLUGINS, choose_runtime
from pocketkube.doctor.facts import Facts
from pocketkube.proxy.select import choose_kind

# Debian package -> how the line names what is missing.
SHORT = {"containerd": "containerd", "runc": "runc", "busybox-static": "static busybox",
         "containernetworking-plugins": "CNI plugins", "nftables": "nft", "iproute2": "ip"}
DOCTOR = "pocketkube doctor tells more"


@dataclass(frozen=True)
class Mode:
    runtime: str  # "containerd" | "process"
    dataplane: str  # "nftables" | "userspace"
    line: str  # "runtime containerd, data plane nftables (root; ...)"


def containerd_missing(f: Facts) -> list[str]:
    """The Debian packages containerd mode needs and this host lacks ([] when it can run).
    nftables and iproute2 are there because up's host network (net.hostnet) drives `nft` and `ip`."""
    missing = [pkg for prog, pkg in (("containerd", "containerd"), ("runc", "runc")) if not f.has(prog)]
    if not f.busybox.path or f.busybox.static is False:
        missing.append("busybox-static")
    if any(p not in f.cni_present for p in CNI_PLUGINS):
        missing.append("containernetworking-plugins")
    missing += [pkg for prog, pkg in (("nft", "nftables"), ("ip", "iproute2")) if not f.has(prog)]
    return missing


def nftables_ok(f: Facts) -> bool:
    """Root, an `nft` binary, and a kernel that let us list the ruleset."""
    return f.euid == 0 and f.has("nft") and f.nft is not None and f.nft.ok


def decide(runtime: str, dataplane: str, f: Facts, endpoint: str = "") -> Mode:
    missing = containerd_missing(f) if runtime != "process" else []
    if missing == [] and runtime != "process" and f.nft is not None and not f.nft.ok:
        missing = ["nftables"]  # installed, but the kernel refuses it: up's pod network cannot be set
    chosen = choose_runtime(runtime, euid=f.euid, missing=missing, endpoint=endpoint)
    plane = choose_kind(dataplane, nftables_ok=nftables_ok(f))
    head = f"runtime {chosen.name}, data plane {plane}"
    fell_back = runtime == "auto" and chosen.name == "process"
    notes: list[str] = []  # why, when nothing fell back
    if runtime == "process":
        notes.append("--runtime process")
    elif endpoint:
        notes.append(f"the CRI runtime at {endpoint}")
    elif not fell_back:
        notes.append("root; containerd, runc, CNI plugins, nft found")
    if dataplane != "auto":
        notes.append(f"--dataplane {dataplane}")
    plane_fell_back = dataplane == "auto" and plane == "userspace"
    if not fell_back and not plane_fell_back:
        return Mode(chosen.name, plane, f"{head} ({'; '.join(notes)})")
    # Something the user may have expected is not there: say what, and the fix.
    reasons: list[str] = []
    fixes: list[str] = []
    if f.euid != 0:
        reasons.append("not root")
        fixes.append("sudo pocketkube up for real containers")
    else:
        absent = [p for p in missing if p != "nftables"] if fell_back else []
        if plane_fell_back or (fell_back and "nftables" in missing):
            if not f.has("nft"):
                absent.insert(0, "nftables")
            elif f.nft is not None and not f.nft.ok:
                reasons.append(f"nft list tables failed ({f.nft.error or 'no nf_tables'})")
        if absent:
            reasons.append("no " + ", ".join(SHORT.get(p, p) for p in absent))
            fixes.append(f"apt-get install -y {' '.join(absent)}")
    if notes and not fell_back:
        reasons.insert(0, "; ".join(notes))
    fixes.append(DOCTOR)
    return Mode(chosen.name, plane, f"{head}: {', '.join(reasons)} ({'; '.join(fixes)})")
