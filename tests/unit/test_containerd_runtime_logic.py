"""ContainerdRuntime's decisions against a scripted CRI client (no containerd): how errors map to
the interface's exceptions, how adopt_all rebuilds histories, and that the exit poller resolves
futures. The real thing is tests/integration/test_containerd_runtime.py."""

from __future__ import annotations

import asyncio

import pytest
from async_waits import until

from pocketkube.agent.runtime.cri import translate as t
from pocketkube.agent.runtime.cri.client import CriError, NotFound, Unavailable
from pocketkube.agent.runtime.cri.runtime import ContainerdRuntime
from pocketkube.agent.runtime.cri.v1 import api_pb2 as api
from pocketkube.agent.runtime.interface import ImagePullError, RuntimeUnavailable, SandboxError, StartError

UID = "u1"
S = 1_700_000_000 * 10**9


def ctr(cid: str, name: str, attempt: int, state: int, exit_code: int = 0) -> tuple[api.Container, api.ContainerStatus]:
    labels = {t.POD_UID: UID, t.CONTAINER_NAME: name}
    meta = api.ContainerMetadata(name=name, attempt=attempt)
    c = api.Container(id=cid, metadata=meta, state=state, created_at=S + attempt, labels=labels)
    st = api.ContainerStatus(id=cid, metadata=meta, state=state, started_at=S, exit_code=exit_code,
                             finished_at=S + 10**9 if state == api.CONTAINER_EXITED else 0, labels=labels,
                             annotations={t.RESTART_COUNT: str(attempt)}, log_path=f"/d/pods/{UID}/{name}/{attempt}.log")
    return c, st


class FakeCri:
    def __init__(self) -> None:
        self.containers: dict[str, tuple[api.Container, api.ContainerStatus]] = {}
        self.sandboxes: list[api.PodSandbox] = []
        self.removed: list[str] = []
        self.fail: dict[str, CriError] = {}
        self.listed: list[tuple[str, object]] = []

    def _maybe_fail(self, method: str) -> None:
        if method in self.fail:
            raise self.fail[method]

    async def list_pod_sandbox(self, filter=None):
        self.listed.append(("sandboxes", filter))
        return [s for s in self.sandboxes if filter is None or not filter.HasField("state")
                or s.state == filter.state.state]

    async def pod_sandbox_status(self, sandbox_id, verbose=False):
        return api.PodSandboxStatusResponse(status=api.PodSandboxStatus(
            id=sandbox_id, network=api.PodSandboxNetworkStatus(ip="10.244.250.7")))

    async def run_pod_sandbox(self, config):
        self._maybe_fail("RunPodSandbox")
        return "sb1"

    async def list_containers(self, filter=None):
        self._maybe_fail("ListContainers")
        self.listed.append(("containers", filter))
        return [c for c, _ in self.containers.values() if filter is None or not filter.HasField("state")
                or c.state == filter.state.state]

    async def container_status(self, cid, verbose=False):
        if cid not in self.containers:
            raise NotFound(code="NOT_FOUND", message="not found", method="ContainerStatus")
        return api.ContainerStatusResponse(status=self.containers[cid][1])

    async def remove_container(self, cid):
        self.removed.append(cid)
        self.containers.pop(cid, None)

    async def pull_image(self, ref, auth=None, sandbox_config=None):
        self._maybe_fail("PullImage")
        return "sha256:x"

    async def image_status(self, ref):
        return None

    async def stop_container(self, cid, timeout):
        self._maybe_fail("StopContainer")

    async def exec_sync(self, cid, cmd, timeout):
        self._maybe_fail("ExecSync")
        return api.ExecSyncResponse(stdout=b"o", stderr=b"e", exit_code=0)

    async def close(self):
        pass


@pytest.fixture
def fake(tmp_path):
    cri = FakeCri()
    rt = ContainerdRuntime("unix:///nonexistent.sock", data_dir=tmp_path, node_name="n1", node_ip="10.250.0.1",
                           poll_interval=0.01, client=cri, resolv_conf=tmp_path / "resolv.conf")
    return cri, rt


async def test_adopt_all_keeps_current_and_last_and_removes_the_rest(fake) -> None:
    cri, rt = fake
    for cid, attempt, state, code in (("a0", 0, api.CONTAINER_EXITED, 1), ("a1", 1, api.CONTAINER_EXITED, 2),
                                      ("a2", 2, api.CONTAINER_EXITED, 3), ("a3", 3, api.CONTAINER_CREATED, 0)):
        cri.containers[cid] = ctr(cid, "app", attempt, state, code)
    cri.containers["s0"] = ctr("s0", "side", 0, api.CONTAINER_RUNNING)
    cri.sandboxes = [api.PodSandbox(id="sb1", state=api.SANDBOX_READY, labels={t.POD_UID: UID},
                                    metadata=api.PodSandboxMetadata(name="web", namespace="ns", uid=UID))]
    await rt.adopt_all()
    h = rt.history(UID, "app")
    assert (h.current.id, h.current.exit_code, h.last.id, h.last.exit_code) == ("a2", 3, "a1", 2)
    assert sorted(cri.removed) == ["a0", "a3"]  # older than the last run, and never started
    assert rt.pods()[UID] == {"name": "web", "namespace": "ns", "ip": "10.244.250.7"}
    assert [(u, r.id) for u, r in rt.running()] == [(UID, "s0")]
    # The poller resolves the running one's future once containerd reports it exited.
    fut = rt.exited(rt.history(UID, "side").current)
    cri.containers["s0"] = ctr("s0", "side", 0, api.CONTAINER_EXITED, 0)
    record = await asyncio.wait_for(fut, 5)
    assert (record.exit_code, record.reason) == (0, "Completed")
    # A container that vanished from containerd ends as ContainerStatusUnknown.
    cri.containers["s1"] = ctr("s1", "gone", 0, api.CONTAINER_RUNNING)
    await rt.adopt_all()
    fut = rt.exited(rt.history(UID, "gone").current)
    del cri.containers["s1"]
    record = await asyncio.wait_for(fut, 5)
    assert (record.exit_code, record.reason) == (137, "ContainerStatusUnknown")
    await rt.close()


async def test_poller_survives_an_unavailable_runtime(fake) -> None:
    cri, rt = fake
    cri.containers["c"] = ctr("c", "app", 0, api.CONTAINER_RUNNING)
    await rt.adopt_all()
    cri.fail["ListContainers"] = Unavailable(code="UNAVAILABLE", message="connection refused", method="ListContainers")
    fut = rt.exited(rt.history(UID, "app").current)
    await asyncio.sleep(0.05)
    assert not fut.done()
    del cri.fail["ListContainers"]
    cri.containers["c"] = ctr("c", "app", 0, api.CONTAINER_EXITED, 2)
    assert (await asyncio.wait_for(fut, 5)).exit_code == 2
    await rt.close()


async def test_stop_while_containerd_restarts_is_runtime_unavailable(fake) -> None:
    """The kubelet retries quietly (no traceback) when containerd does not answer a stop."""
    cri, rt = fake
    cri.containers["c"] = ctr("c", "app", 0, api.CONTAINER_RUNNING)
    await rt.adopt_all()
    cri.fail["StopContainer"] = Unavailable(code="UNAVAILABLE", message="connection refused", method="StopContainer")
    with pytest.raises(RuntimeUnavailable, match="stopping container app: connection refused"):
        await rt.stop(rt.history(UID, "app").current, 5)
    await rt.close()


async def test_sandbox_failure_carries_containerds_message(fake) -> None:
    cri, rt = fake
    cri.fail["RunPodSandbox"] = CriError(code="UNKNOWN", message="failed to setup network for sandbox",
                                         method="RunPodSandbox")
    pod = {"metadata": {"name": "p", "namespace": "d", "uid": UID}, "spec": {"containers": []}}
    rt._make_cgroup = lambda uid: None  # no cgroupfs writes in unit tests
    with pytest.raises(SandboxError, match="^rpc error: code = Unknown desc = failed to setup network for sandbox$"):
        await rt.run_pod_sandbox(pod)
    with pytest.raises(SandboxError, match="no metadata.uid"):
        await rt.run_pod_sandbox({"metadata": {}, "spec": {}})
    del cri.fail["RunPodSandbox"]
    assert await rt.run_pod_sandbox(pod) == "10.244.250.7"
    assert await rt.run_pod_sandbox({**pod, "spec": {"hostNetwork": True}}) == "10.250.0.1"


@pytest.mark.parametrize(("code", "message", "unreachable"), [
    ("UNKNOWN", "dial tcp 127.0.0.1:1: connect: connection refused", True),
    ("NOT_FOUND", "failed to pull and unpack image: 127.0.0.1:5000/x:y: not found", False),
    ("DEADLINE_EXCEEDED", "Deadline Exceeded", True),  # no registry answered within the pull deadline
    ("UNAVAILABLE", "failed to connect to all addresses; connection refused", False),  # containerd itself
])
async def test_pull_errors(fake, code: str, message: str, unreachable: bool) -> None:
    cri, rt = fake
    cri.fail["PullImage"] = CriError(code=code, message=message, method="PullImage")
    with pytest.raises(ImagePullError) as err:
        await rt.pull_image("127.0.0.1:5000/x:y")
    assert err.value.unreachable is unreachable
    assert str(err.value).startswith("rpc error: code = ")


async def test_exec_sync_outcomes(fake) -> None:
    cri, rt = fake
    cri.containers["c"] = ctr("c", "app", 0, api.CONTAINER_RUNNING)
    await rt.adopt_all()
    out = await rt.exec_sync(UID, "app", ["x"], env={}, user=None, timeout=1)
    assert (out.exit_code, out.output) == (0, "oe")
    cri.fail["ExecSync"] = CriError(code="UNKNOWN", message="failed to exec in container: timeout 1s exceeded: "
                                    "context deadline exceeded", method="ExecSync")
    assert (await rt.exec_sync(UID, "app", ["x"], env={}, user=None, timeout=1)).exit_code is None
    cri.fail["ExecSync"] = CriError(code="UNKNOWN", message='exec: "x": executable file not found in $PATH',
                                    method="ExecSync")
    with pytest.raises(StartError, match="executable file not found"):
        await rt.exec_sync(UID, "app", ["x"], env={}, user=None, timeout=1)
    with pytest.raises(StartError, match="not running"):
        await rt.exec_sync(UID, "nope", ["x"], env={}, user=None, timeout=1)
    await rt.close()


async def test_record_failed_start_without_a_container(fake) -> None:
    _, rt = fake
    record = rt.record_failed_start(UID, "app", 0, "boom")
    assert (record.exit_code, record.reason, record.message, record.scheme) == (128, "StartError", "boom", "containerd")
    assert rt.record_failed_start(UID, "app", 0, "again") is record
    second = rt.record_failed_start(UID, "app", 1, "boom 2")
    h = rt.history(UID, "app")
    assert (h.current, h.last) == (second, record)
    await rt.close()


async def test_the_poller_lists_only_running_containers_and_ready_sandboxes(fake) -> None:
    cri, rt = fake
    cri.containers["r"] = ctr("r", "app", 0, api.CONTAINER_RUNNING)
    cri.containers["u"] = ctr("u", "side", 0, api.CONTAINER_RUNNING)
    cri.sandboxes = [api.PodSandbox(id="sb1", state=api.SANDBOX_READY, labels={t.POD_UID: UID},
                                    metadata=api.PodSandboxMetadata(name="web", namespace="ns", uid=UID))]
    await rt.adopt_all()
    lost: list[str] = []
    rt.on_sandbox_lost(lost.append)
    futs = {name: rt.exited(rt.history(UID, name).current) for name in ("app", "side")}
    # Not listed as running, yet not exited (containerd cannot tell): still watched, not resolved.
    cri.containers["u"] = ctr("u", "side", 0, api.CONTAINER_UNKNOWN)
    cri.listed.clear()
    await until(lambda: len(cri.listed) >= 4, "a few polls")
    assert not futs["side"].done() and not futs["app"].done() and not lost
    assert {(kind, f.state.state) for kind, f in cri.listed} == {
        ("containers", api.CONTAINER_RUNNING), ("sandboxes", api.SANDBOX_READY)}
    cri.containers["u"] = ctr("u", "side", 0, api.CONTAINER_EXITED, 3)
    assert (await asyncio.wait_for(futs["side"], 5)).exit_code == 3
    assert not futs["app"].done()
    cri.sandboxes = [api.PodSandbox(id="sb1", state=api.SANDBOX_NOTREADY, labels={t.POD_UID: UID},
                                    metadata=api.PodSandboxMetadata(name="web", namespace="ns", uid=UID))]
    await until(lambda: lost == [UID], "the lost sandbox reported")
    await rt.close()
