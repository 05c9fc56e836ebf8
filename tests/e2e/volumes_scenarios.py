"""Volume scenarios shared by the process and containerd e2e modules. `root` is how a container
names its filesystem's root: "/" in a container, "" (its working directory) for a process pod."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

from pocketkube.testing.procs import Kubectl
from pocketkube.testing.waits import wait_for


def configmap(name: str, data: dict) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}


def secret(name: str, data: dict) -> dict:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}


def pod(name: str, script: str | list[tuple[str, str]], volumes: list[dict], mounts: list[dict]) -> dict:
    scripts = [("c", script)] if isinstance(script, str) else script
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"terminationGracePeriodSeconds": 0, "volumes": volumes,
                     "containers": [{"name": c, "image": "busybox", "command": ["sh", "-c", s],
                                     "volumeMounts": mounts} for c, s in scripts]}}


def apply(k: Kubectl, *objs: dict) -> None:
    k.ok("apply", "--validate=false", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objs)}))


def get(k: Kubectl, kind: str, name: str) -> dict:
    return json.loads(k.ok("get", kind, name, "-o", "json"))


def events(k: Kubectl, name: str, reason: str) -> list[str]:
    out = json.loads(k.ok("get", "events", "--field-selector", f"involvedObject.name={name}", "-o", "json"))
    return [e["message"] for e in out["items"] if e.get("reason") == reason]


def running(k: Kubectl, name: str) -> bool:
    return get(k, "pod", name).get("status", {}).get("phase") == "Running"


def logs(k: Kubectl, name: str, container: str = "") -> str:
    cp = k.run("logs", name, *(["-c", container] if container else []))
    return cp.stdout if cp.returncode == 0 else ""


def last_line(k: Kubectl, name: str) -> str:
    lines = logs(k, name).strip().splitlines()
    return lines[-1] if lines else ""


def configmap_secret_update(k: Kubectl, root: str) -> float:
    """A pod reads a ConfigMap, a Secret and a subPath of the ConfigMap; a ConfigMap update reaches
    the volume (not the subPath) within 10 s. Returns how long it took."""
    apply(k, configmap("vol-config", {"k": "v1"}), secret("vol-secret", {"pw": "s3cret"}))
    script = (f"while :; do echo cm=$(cat {root}etc/config/k) pw=$(cat {root}etc/secret/pw) "
              f"sub=$(cat {root}etc/sub/k); sleep 0.2; done")
    apply(k, pod("vol-reader", script,
                 [{"name": "cfg", "configMap": {"name": "vol-config"}},
                  {"name": "sec", "secret": {"secretName": "vol-secret", "defaultMode": 0o444}}],
                 [{"name": "cfg", "mountPath": "/etc/config"}, {"name": "sec", "mountPath": "/etc/secret"},
                  {"name": "cfg", "mountPath": "/etc/sub/k", "subPath": "k"}]))
    wait_for(lambda: last_line(k, "vol-reader") == "cm=v1 pw=s3cret sub=v1", timeout=60,
             what="the pod reads its ConfigMap and Secret")
    start = time.monotonic()
    apply(k, configmap("vol-config", {"k": "v2"}))
    wait_for(lambda: last_line(k, "vol-reader") == "cm=v2 pw=s3cret sub=v1", timeout=10, interval=0.1,
             what="the update reaches the running pod (the subPath keeps its file)")
    took = time.monotonic() - start
    k.ok("delete", "pod/vol-reader", "configmap/vol-config", "secret/vol-secret", "--wait=true")
    return took


def failed_mount_then_start(k: Kubectl, root: str) -> None:
    apply(k, pod("vol-waiter", f"echo $(cat {root}etc/late/k); sleep 3600",
                 [{"name": "late", "configMap": {"name": "vol-late"}}], [{"name": "late", "mountPath": "/etc/late"}]))
    wait_for(lambda: events(k, "vol-waiter", "FailedMount"), timeout=30, what="FailedMount")
    assert events(k, "vol-waiter", "FailedMount")[0] == \
        'MountVolume.SetUp failed for volume "late" : configmap "vol-late" not found'
    status = get(k, "pod", "vol-waiter")["status"]
    assert status["phase"] == "Pending"
    assert status["containerStatuses"][0]["state"]["waiting"]["reason"] == "ContainerCreating"
    apply(k, configmap("vol-late", {"k": "here"}))
    wait_for(lambda: logs(k, "vol-waiter").strip() == "here", timeout=30, what="the pod starts once it exists")
    k.ok("delete", "pod/vol-waiter", "configmap/vol-late", "--wait=true")


def empty_dir_shared(k: Kubectl, root: str, node_dir: Path) -> None:
    apply(k, pod("vol-pair", [("writer", f"echo shared > {root}data/x; sleep 3600"),
                              ("reader", f"until cat {root}data/x 2>/dev/null; do sleep 0.2; done; sleep 3600")],
                 [{"name": "data", "emptyDir": {}}, {"name": "mem", "emptyDir": {"medium": "Memory",
                                                                                  "sizeLimit": "8Mi"}}],
                 [{"name": "data", "mountPath": "/data"}, {"name": "mem", "mountPath": "/mem"}]))
    wait_for(lambda: logs(k, "vol-pair", "reader").strip() == "shared", timeout=60,
             what="one container reads what the other wrote")
    uid = get(k, "pod", "vol-pair")["metadata"]["uid"]
    mem = node_dir / "kubelet" / "pods" / uid / "volumes" / "kubernetes.io~empty-dir" / "mem"
    mounts = [line.split() for line in Path("/proc/self/mounts").read_text().splitlines()]
    assert any(m[1] == str(mem) and m[2] == "tmpfs" and "size=8192k" in m[3] for m in mounts), mem
    k.ok("delete", "pod", "vol-pair", "--wait=true")
    wait_for(lambda: not (node_dir / "kubelet" / "pods" / uid).exists(), timeout=30, what="volumes removed")
    assert str(mem) not in Path("/proc/self/mounts").read_text()


def hostpath_type_error(k: Kubectl, file: Path) -> None:
    apply(k, pod("vol-hostpath", "sleep 3600", [{"name": "h", "hostPath": {"path": str(file), "type": "Directory"}}],
                 [{"name": "h", "mountPath": "/h"}]))
    wait_for(lambda: events(k, "vol-hostpath", "FailedMount"), timeout=30, what="FailedMount")
    assert events(k, "vol-hostpath", "FailedMount")[0] == \
        f'MountVolume.SetUp failed for volume "h" : hostPath type check failed: {file} is not a directory'
    assert get(k, "pod", "vol-hostpath")["status"]["phase"] == "Pending"
    k.ok("delete", "pod", "vol-hostpath", "--wait=true")


def empty_dir_over_its_limit_evicts(k: Kubectl, root: str) -> None:
    """A disk emptyDir written past its sizeLimit: the pod is evicted by the periodic check."""
    apply(k, pod("vol-hog", f"dd if=/dev/zero of={root}scratch/fill bs=1024 count=2048; sleep 3600",
                 [{"name": "scratch", "emptyDir": {"sizeLimit": "1Mi"}}], [{"name": "scratch", "mountPath": "/scratch"}]))
    wait_for(lambda: get(k, "pod", "vol-hog").get("status", {}).get("reason") == "Evicted", timeout=40,
             what="the pod is evicted")
    status = get(k, "pod", "vol-hog")["status"]
    message = 'Usage of EmptyDir volume "scratch" exceeds the limit "1Mi". '
    assert status["phase"] == "Failed" and status["message"] == message
    assert message in events(k, "vol-hog", "Evicted")
    k.ok("delete", "pod", "vol-hog", "--wait=true")


def api_data_volumes_are_read_only(k: Kubectl) -> None:
    """A container cannot write into a ConfigMap volume (upstream mounts API data read-only)."""
    apply(k, configmap("vol-ro", {"k": "v"}),
          pod("vol-ro", "touch /etc/config/new 2>/dev/null && echo wrote || echo refused; sleep 3600",
              [{"name": "cfg", "configMap": {"name": "vol-ro"}}], [{"name": "cfg", "mountPath": "/etc/config"}]))
    wait_for(lambda: logs(k, "vol-ro").strip(), timeout=60, what="the write attempt")
    assert logs(k, "vol-ro").strip() == "refused"
    k.ok("delete", "pod/vol-ro", "configmap/vol-ro", "--wait=true")


def projected_and_downward_api(k: Kubectl, root: str) -> None:
    """A projected volume of a ConfigMap key, a Secret key and the pod's labels; relabelling the
    pod rewrites its labels file."""
    apply(k, configmap("vol-proj", {"greeting": "hello"}), secret("vol-proj", {"token": "t0k"}))
    script = (f"while :; do echo $(cat {root}proj/greeting) $(cat {root}proj/token) "
              f"$(cat {root}proj/meta/labels | tr '\\n' ' '); sleep 0.2; done")
    spec = pod("vol-proj", script, [{"name": "proj", "projected": {"sources": [
        {"configMap": {"name": "vol-proj", "items": [{"key": "greeting", "path": "greeting"}]}},
        {"secret": {"name": "vol-proj", "items": [{"key": "token", "path": "token"}]}},
        {"downwardAPI": {"items": [{"path": "meta/labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}}]}}],
        [{"name": "proj", "mountPath": "/proj"}])
    spec["metadata"]["labels"] = {"tier": "web"}
    apply(k, spec)
    wait_for(lambda: last_line(k, "vol-proj") == 'hello t0k tier="web"', timeout=60, what="the projected files")
    k.ok("label", "pod", "vol-proj", "release=1")
    wait_for(lambda: last_line(k, "vol-proj") == 'hello t0k release="1" tier="web"', timeout=10,
             what="the labels file follows the pod's labels")
    k.ok("delete", "pod/vol-proj", "configmap/vol-proj", "secret/vol-proj", "--wait=true")
