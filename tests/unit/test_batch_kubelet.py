"""The kubelet with a Job's pods: a finished pod (restartPolicy Never) gives its sandbox up, so
its IP is free for the next pod, while its status stays."""

from __future__ import annotations

import pytest
from async_waits import until

from pocketkube.api.meta import deep_get
from pocketkube.api.resources import BY_PLURAL
from pocketkube.api.timestamps import now_rfc3339
from pocketkube.testing.kubelets import kubelet_on_fakes

PODS = BY_PLURAL[("", "pods")]
NODE = "node-1"


@pytest.fixture
async def world():
    async with kubelet_on_fakes() as (fake, rt, _):
        yield fake, rt


@pytest.mark.parametrize(("exit_code", "phase"), [(0, "Succeeded"), (3, "Failed")])
async def test_finished_pod_stops_its_sandbox_and_keeps_its_status(world, exit_code, phase):
    fake, rt = world
    created = await fake.create(PODS, {"metadata": {"name": "once", "namespace": "default"}, "spec": {
        "nodeName": NODE, "restartPolicy": "Never",
        "containers": [{"name": "c", "image": "app:1"}]}}, "default")
    uid = created["metadata"]["uid"]
    rec = await until(lambda: (h := rt.history(uid, "c")) and h.current, "the container started")
    rec.exit_code, rec.reason, rec.finished_at = exit_code, "Completed" if exit_code == 0 else "Error", now_rfc3339()
    rt._exits[rec.id].set_result(rec)
    await until(lambda: uid in rt.stopped_sandboxes, "the sandbox stopped")
    pod = fake.objects(PODS, "default")[0]
    assert pod["status"]["phase"] == phase and pod["status"]["podIP"]
    assert deep_get(pod, "status", "containerStatuses", 0, "state", "terminated", "exitCode") == exit_code
    assert rt.stopped_sandboxes.count(uid) == 1
