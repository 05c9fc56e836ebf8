"""The I/O of a cluster's lifecycle: recording its plan and state at `up`, `up --detach`, `down`
(and `--delete`), and the sweep after an `up` that was killed (stale state)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sys
import time
from pathlib import Path

from pocketkube.clusters import names, plans, state
from pocketkube.clusters.state import UpState

READY_MARKER = "Press Ctrl-C to stop the cluster."  # the last line `up` prints once Ready
DOWN_GRACE = 90.0  # seconds `down` lets `up` stop its pods and processes before SIGKILL
DETACH_TIMEOUT = 600.0


def others(default_dir: Path, me: Path) -> list[plans.Recorded]:
    """Every other cluster's recorded plan."""
    found = []
    for name, path in names.known_dirs(default_dir).items():
        if path.resolve() == me.resolve():
            continue
        plan = state.read_plan(path) or {}
        if not plan and name == names.DEFAULT_NAME:
            plan = {"slot": 0}  # a default cluster from before plans were recorded: today's defaults
        found.append(plans.Recorded(name, plan.get("slot"), plan.get("port"),
                                    {k: plan[k] for k in plans.RANGE_KEYS if k in plan}))
    return found


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.socket() as s:
            s.bind((host, port))
    except OSError:
        return False
    return True


def choose_and_record(name: str, data_dir: Path, default_dir: Path, runtime: str,
                      explicit: dict[str, object], host: str) -> dict[str, object]:
    """The plan of this `up` (explicit flags win), recorded in the data dir before anything binds,
    so a cluster started next avoids it."""
    if runtime == "containerd":
        _check_bridge_ids(data_dir, default_dir)
    previous = state.read_plan(data_dir) or {}
    own = previous.get("slot") if isinstance(previous.get("slot"), int) else None
    slot, plan = plans.choose(runtime, explicit, others(default_dir, data_dir), own_slot=own,
                              port_free=lambda p: port_free(p, host))
    state.write_plan(data_dir, {"name": name, "slot": slot, "runtime": runtime, **plan})
    return plan


def _check_bridge_ids(data_dir: Path, default_dir: Path) -> None:
    """Container mode names a cluster's bridges and filter table after four hex digits of its data
    dir's hash: two clusters must not share them (1 in 65,536, but then they would clash)."""
    from pocketkube.net.addresses import cluster_id

    mine = cluster_id(str(data_dir.resolve()))
    for name, path in names.known_dirs(default_dir).items():
        if path.resolve() != data_dir.resolve() and cluster_id(str(path.resolve())) == mine:
            raise ValueError(f"cluster {name!r} has the same host network id ({mine}: bridges pk{mine}c, ...) "
                             "as this one: pick another name, or delete it")


def reach_lines(name: str, data_dir: Path, st: UpState) -> list[str]:
    from pocketkube.clusters.status import probe

    flag = "" if name == names.DEFAULT_NAME else f" --name {name}"
    url = probe(data_dir)[0] or f"https://{st.host}:{st.port}"
    return [f"cluster {name!r} is already running (pid {st.pid}), API server {url}",
            f"export KUBECONFIG={data_dir / 'kubeconfig'}",
            f"(context '{names.context_name(name)}' in ~/.kube/config; stop it with `pocketkube down{flag}`)"]


# --- up --detach ------------------------------------------------------------------------------

def detach(name: str, data_dir: Path) -> int | None:
    """Fork the same `up` into a new session (output to DATA_DIR/logs/up.log), wait until it is
    Ready, print what it printed, and return its exit code; a failure prints the log's tail.
    The forked child returns None and goes on as the foreground `up` (a fork, not a new
    interpreter: the return is as early as the foreground `up`'s Ready)."""
    log = data_dir / "logs" / "up.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    offset = os.lseek(fd, 0, os.SEEK_END)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        os.setsid()
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
        os.close(devnull)
        return None
    os.close(fd)
    deadline = time.monotonic() + DETACH_TIMEOUT
    text = ""
    with log.open("rb") as f:
        f.seek(offset)
        while True:
            chunk = f.read()
            if chunk:
                text += chunk.decode(errors="replace")
                if READY_MARKER in text:
                    break
                continue
            exited = os.waitpid(pid, os.WNOHANG)[0] == pid
            if exited or time.monotonic() > deadline:
                text += f.read().decode(errors="replace")
                print("\n".join(text.splitlines()[-25:]), file=sys.stderr)
                if not exited:
                    os.killpg(pid, signal.SIGTERM)
                print(f"pocketkube: the cluster did not start; the whole log is {log}", file=sys.stderr)
                return 1
            time.sleep(0.005)
    flag = "" if name == names.DEFAULT_NAME else f" --name {name}"
    print(text.split(READY_MARKER)[0].rstrip("\n"), flush=True)
    print(f"Running in the background (pid {pid}); `pocketkube status`, `pocketkube logs{flag}`, "
          f"and `pocketkube down{flag}` to stop it.", flush=True)
    return 0


# --- down and the sweep -----------------------------------------------------------------------

def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def processes_of(data_dir: Path) -> list[int]:
    """pocketkube processes (server, agents, controller manager, dns, ingress, `up`) whose
    arguments name this data dir or a path in it."""
    root = str(data_dir.resolve())
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        args = _cmdline(int(entry))
        if "pocketkube" not in args and not any(a.endswith("/pocketkube") for a in args):
            continue
        if any(a == root or a.startswith(root + "/") for a in args):
            found.append(int(entry))
    return found


def _wait_gone(pids: dict[int, int | None], timeout: float) -> dict[int, int | None]:
    """The processes of `pids` (pid → start ticks) still alive after up to `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        pids = {p: t for p, t in pids.items() if state.start_ticks(p) is not None and state.start_ticks(p) == t}
        if not pids or time.monotonic() >= deadline:
            return pids
        time.sleep(0.02)


def _signal(pids, sig) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def sweep(data_dir: Path, plan: dict | None) -> list[str]:
    """Stop and remove what a cluster whose `up` is gone left: its processes (they live in
    sessions of their own), pods, volume mounts, data-plane rules, containerd and bridges."""
    done = []
    pids = {p: state.start_ticks(p) for p in processes_of(data_dir)}
    if pids:
        _signal(pids, signal.SIGTERM)  # agents stop their pods on SIGTERM
        left = _wait_gone(pids, 20)
        _signal(left, signal.SIGKILL)
        _wait_gone(left, 5)
        done.append(f"{len(pids)} processes")
    import asyncio
    import ipaddress

    from pocketkube.agent.kubelet.volumes.manager import unmount_all
    from pocketkube.agent.runtime.process import kill_recorded
    from pocketkube.proxy.select import remove_leftovers

    plan = plan or {}
    base = plan.get("node_ip_base")
    for node_dir in sorted((data_dir / "nodes").glob("node-*")):
        if kill_recorded(node_dir):
            done.append(f"pods of {node_dir.name}")
        if unmount_all(node_dir / "kubelet"):
            done.append(f"mounts of {node_dir.name}")
        try:
            index = int(node_dir.name.rsplit("-", 1)[1])
            remove_leftovers(node_dir.name, str(ipaddress.ip_address(base) + index)) if base else None
        except (ValueError, IndexError):
            pass
        if plan.get("runtime") == "containerd" and (node_dir / "containerd").exists():
            from pocketkube.agent.runtime.containerd import stop_leftover_containerd

            asyncio.run(stop_leftover_containerd(node_dir / "containerd"))
    if plan.get("runtime") == "containerd":
        from pocketkube.net import hostnet, portmap

        cid = hostnet.cluster_id_of(data_dir.resolve())
        hostnet.teardown_cluster_network(cid)
        done += hostnet.remove_leftovers(cid)
        portmap.remove_idle_chains()
    return done


def clean_if_stale(name: str, data_dir: Path) -> UpState | None:
    """The running `up`'s state; a stale one (its process gone or its pid reused) is swept and
    removed, and said so on stderr."""
    st = state.read_state(data_dir)
    if st is None or state.alive(st):
        return st
    removed = sweep(data_dir, state.read_plan(data_dir))
    state.remove_state(data_dir)
    extra = f"; stopped what it left: {', '.join(removed)}" if removed else ""
    print(f"• cluster {name!r}: its `up` (pid {st.pid}) is gone; removed the stale state{extra}", file=sys.stderr)
    return None


def down(name: str, data_dir: Path, delete: bool, user_kubeconfig: Path) -> int:
    st = clean_if_stale(name, data_dir)
    if st is None:
        if not delete:
            print(f"cluster {name!r} is not running", flush=True)
    else:
        t0 = time.monotonic()
        os.kill(st.pid, signal.SIGTERM)
        left = _wait_gone({st.pid: st.start_ticks}, DOWN_GRACE)
        if left:
            # A stuck stop: the process group of a detached `up` is its own (a new session).
            try:
                os.killpg(st.pid, signal.SIGKILL) if os.getpgid(st.pid) == st.pid else os.kill(st.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            _wait_gone(left, 5)
        if left or processes_of(data_dir):
            sweep(data_dir, state.read_plan(data_dir))
        state.remove_state(data_dir, st.pid)
        print(f"cluster {name!r} stopped ({time.monotonic() - t0:.1f}s)", flush=True)
    if delete:
        existed = data_dir.exists()
        shutil.rmtree(data_dir, ignore_errors=True)
        removed_context = remove_user_context(names.context_name(name), user_kubeconfig)
        if existed or removed_context:
            print(f"cluster {name!r} deleted (data dir {data_dir}"
                  + (f", context '{names.context_name(name)}'" if removed_context else "") + ")", flush=True)
        else:
            print(f"cluster {name!r} does not exist", flush=True)
    return 0


def remove_user_context(context: str, user_config: Path) -> bool:
    """Remove the cluster's context, cluster and user entries from a kubeconfig (as `kind delete
    cluster`); the current context is unset when it was this one. Whether anything was removed."""
    import yaml

    try:
        config = yaml.safe_load(user_config.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return False
    if not isinstance(config, dict):
        return False
    entries = {"clusters": context, "users": f"{context}-admin", "contexts": context}
    changed = False
    for section, entry in entries.items():
        kept = [e for e in (config.get(section) or []) if not (isinstance(e, dict) and e.get("name") == entry)]
        changed |= len(kept) != len(config.get(section) or [])
        config[section] = kept
    if config.get("current-context") == context:
        config["current-context"] = ""
    if changed:
        fd = os.open(user_config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            yaml.safe_dump(config, f, sort_keys=False)
    return changed
