"""The kubelet over the CRI-shaped runtime interface, with a fake runtime and the fake client:
sandbox first, Kubernetes' pull policy and its Events, the offline fallback, CreateContainerError;
plus the pure parts (policy, references, messages)."""

from __future__ import annotations

import asyncio
import re

import pytest
from async_waits import until

from pocketkube.agent.kubelet import Kubelet, image_manager
from pocketkube.agent.kubelet.image_manager import (
    default_pull_policy,
    go_duration,
    image_is_label,
    pulled_message,
    should_pull,
)
from pocketkube.agent.runtime.interface import (
    ImageInfo,
    ImagePullError,
    InvalidImageName,
)
from pocketkube.agent.runtime.reference import parse_reference, with_default_tag
from pocketkube.api.resources import BY_PLURAL
from pocketkube.testing.fakeclient import FakeClient
from pocketkube.testing.fakeruntime import FakeRuntime
from pocketkube.testing.kubelets import kubelet_on_fakes
from pocketkube.util.backoff import Backoff

PODS = BY_PLURAL[("", "pods")]
EVENTS = BY_PLURAL[("", "events")]
NODE = "node-1"


# ---- pure decisions ----

@pytest.mark.parametrize("image,policy", [
    ("nginx", "Always"), ("nginx:latest", "Always"), ("nginx:1.27", "IfNotPresent"),
    ("localhost:5000/app", "Always"), ("localhost:5000/app:v2", "IfNotPresent"),
    ("nginx@sha256:" + "a" * 64, "IfNotPresent"), ("nginx:latest@sha256:" + "a" * 64, "Always"),
])
def test_default_pull_policy_as_the_api_server_defaults_it(image, policy):
    from pocketkube.registry.core.pods.defaults import image_tag  # the API server's rule, for comparison

    assert default_pull_policy(image) == policy
    assert ("Always" if image_tag(image) == "latest" else "IfNotPresent") == policy


@pytest.mark.parametrize("policy,present,pull", [
    ("Always", True, True), ("Always", False, True), ("IfNotPresent", True, False),
    ("IfNotPresent", False, True), ("Never", True, False), ("Never", False, False),
])
def test_should_pull(policy, present, pull):
    assert should_pull(policy, present) is pull


def test_only_the_process_runtime_treats_an_image_with_a_command_as_a_label():
    assert image_is_label("process", {"image": "alpine", "command": ["sleep", "1"]})
    assert image_is_label("process", {"image": "alpine", "args": ["sleep", "1"]})
    assert not image_is_label("process", {"image": "nginx"})
    assert not image_is_label("containerd", {"image": "alpine", "command": ["sleep", "1"]})


@pytest.mark.parametrize("seconds,text", [(0, "0s"), (0.0004, "0s"), (0.25, "250ms"), (1.234567, "1.234s"),
                                          (1.5, "1.5s"), (10, "10s"), (80, "1m20s"), (300, "5m0s"),
                                          (3600.001, "1h0m0.001s")])
def test_go_duration_truncates_to_milliseconds(seconds, text):
    assert go_duration(seconds) == text


def test_pulled_message_has_upstreams_shape():
    assert pulled_message("nginx", 1.2345, 2.5, 1024) == \
        'Successfully pulled image "nginx" in 1.234s (2.5s including waiting). Image size: 1024 bytes.'
    assert pulled_message("nginx", 0.0301, 0.0302) == \
        'Successfully pulled image "nginx" in 30ms (30ms including waiting).'


@pytest.mark.parametrize("image,normalized,tagged", [
    ("nginx", "docker.io/library/nginx:latest", "nginx:latest"),
    ("nginx:1.27", "docker.io/library/nginx:1.27", "nginx:1.27"),
    ("index.docker.io/library/nginx", "docker.io/library/nginx:latest", "index.docker.io/library/nginx:latest"),
    ("bitnami/nginx", "docker.io/bitnami/nginx:latest", "bitnami/nginx:latest"),
    ("localhost:5000/team/app:v2", "localhost:5000/team/app:v2", "localhost:5000/team/app:v2"),
    ("127.0.0.1:5000/busybox", "127.0.0.1:5000/busybox:latest", "127.0.0.1:5000/busybox:latest"),
    ("registry.k8s.io/pause:3.10", "registry.k8s.io/pause:3.10", "registry.k8s.io/pause:3.10"),
    ("nginx@sha256:" + "a" * 64, "docker.io/library/nginx@sha256:" + "a" * 64, "nginx@sha256:" + "a" * 64),
])
def test_valid_references_normalize_as_docker_does(image, normalized, tagged):
    assert parse_reference(image).normalized() == normalized
    assert with_default_tag(image) == tagged


@pytest.mark.parametrize("image,error", [
    ("Nginx", "invalid reference format: repository name (library/Nginx) must be lowercase"),
    ("nginx:", "invalid reference format"),
    ("nginx; rm -rf /", "invalid reference format"),
    ("-nginx", "invalid reference format"),
    ("nginx@sha256:abc", "invalid reference format"),
    ("", "invalid reference format"),
    ("a" * 64, f"invalid repository name ({'a' * 64}), cannot specify 64-byte hexadecimal strings"),
    ("x/" * 130 + "y", "repository name must not be more than 255 characters"),
])
def test_invalid_references_fail_with_the_kubelets_message(image, error):
    with pytest.raises(InvalidImageName) as e:
        parse_reference(image)
    assert str(e.value) == f'couldn\'t parse image reference "{image}": {error}'


# ---- a fake runtime ----

@pytest.fixture
async def world():
    async with kubelet_on_fakes(present=()) as world:
        yield world


def pod(name: str, image: str, **container) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
            "spec": {"nodeName": NODE, "containers": [{"name": "c", "image": image, **container}]}}


def events(fake: FakeClient, name: str) -> list[tuple[str, str, str]]:
    return [(e["type"], e["reason"], e["message"]) for e in fake.objects(EVENTS, "default")
            if e["involvedObject"]["name"] == name]


def reasons(fake: FakeClient, name: str) -> list[str]:
    return [r for _, r, _ in events(fake, name)]


def status_of(fake: FakeClient, name: str) -> dict:
    return next(p for p in fake.objects(PODS, "default") if p["metadata"]["name"] == name).get("status") or {}


def container_state(fake: FakeClient, name: str) -> dict:
    statuses = status_of(fake, name).get("containerStatuses") or [{}]
    return statuses[0].get("state") or {}


def waiting(fake: FakeClient, name: str) -> dict:
    return container_state(fake, name).get("waiting") or {}


def running(fake: FakeClient, name: str) -> bool:
    return "running" in container_state(fake, name)


async def test_always_pulls_with_upstreams_events_and_status(world):
    fake, rt, _ = world
    rt.registry["nginx:latest"] = ImageInfo("nginx:latest", "sha256:abc")
    await fake.create(PODS, pod("web", "nginx"), "default")
    await until(lambda: running(fake, "web"), "the container running")
    assert rt.pulls == ["nginx:latest"]
    cfg = rt.started[0]
    assert (cfg.image, cfg.image_id, cfg.pod_ip) == ("docker.io/library/nginx:latest", "sha256:abc", "10.244.1.2")
    st = status_of(fake, "web")
    cs = st["containerStatuses"][0]
    assert (cs["containerID"], cs["imageID"], cs["image"]) == ("containerd://c1", "sha256:abc",
                                                                 "docker.io/library/nginx:latest")
    assert st["podIP"] == "10.244.1.2"
    got = await until(lambda: len(events(fake, "web")) >= 4 and events(fake, "web"), "four events")
    assert got[0] == ("Normal", "Pulling", 'Pulling image "nginx"')
    assert got[1][:2] == ("Normal", "Pulled")
    assert re.fullmatch(r'Successfully pulled image "nginx" in [0-9.]+m?s \([0-9.]+m?s including waiting\)\.',
                        got[1][2]), got[1][2]
    assert got[2:4] == [("Normal", "Created", "Created container: c"), ("Normal", "Started", "Started container c")]


async def test_if_not_present_uses_the_local_image(world):
    fake, rt, _ = world
    rt.present["nginx:1.27"] = ImageInfo("nginx:1.27", "sha256:local")
    await fake.create(PODS, pod("web", "nginx:1.27"), "default")
    await until(lambda: running(fake, "web"), "the container running")
    assert rt.pulls == [] and rt.started[0].image_id == "sha256:local"
    await until(lambda: ("Normal", "Pulled", 'Container image "nginx:1.27" already present on machine')
                in events(fake, "web"), "the Pulled event")


async def test_never_without_the_image_waits_and_runs_once_it_is_loaded(world, monkeypatch):
    fake, rt, _ = world
    monkeypatch.setattr(image_manager, "NEVER_PULL_RETRY", 0.05)
    await fake.create(PODS, pod("local", "app:v1", imagePullPolicy="Never"), "default")
    w = await until(lambda: waiting(fake, "local").get("reason") == "ErrImageNeverPull" and waiting(fake, "local"),
                    "ErrImageNeverPull")
    assert w["message"] == 'Container image "app:v1" is not present with pull policy of Never'
    await until(lambda: {"ErrImageNeverPull", "Failed"} <= set(reasons(fake, "local")), "the events")
    assert ("Warning", "ErrImageNeverPull", w["message"]) in events(fake, "local")
    assert ("Warning", "Failed", "Error: ErrImageNeverPull") in events(fake, "local")
    assert status_of(fake, "local")["phase"] == "Pending" and rt.pulls == []
    rt.present["app:v1"] = ImageInfo("app:v1", "sha256:loaded")  # `pocketkube image load`
    await until(lambda: running(fake, "local"), "the container running")
    assert rt.pulls == []


async def test_a_failed_pull_is_err_image_pull_then_image_pull_back_off(world):
    fake, rt, _ = world
    rt.registry["ghost:1.0"] = ImagePullError('failed to pull and unpack image "docker.io/library/ghost:1.0": '
                                              "not found")
    await fake.create(PODS, pod("ghost", "ghost:1.0"), "default")
    message = 'failed to pull and unpack image "docker.io/library/ghost:1.0": not found'
    await until(lambda: len(events(fake, "ghost")) >= 3, "the events")
    assert events(fake, "ghost")[:3] == [
        ("Normal", "Pulling", 'Pulling image "ghost:1.0"'),
        ("Warning", "Failed", f'Failed to pull image "ghost:1.0": {message}'),
        ("Warning", "Failed", "Error: ErrImagePull")]
    # The next sync within the back-off (the worker's own status write wakes it) does not pull
    # again: the container waits in ImagePullBackOff, with the pull's error.
    w = await until(lambda: waiting(fake, "ghost").get("reason") == "ImagePullBackOff" and waiting(fake, "ghost"),
                    "ImagePullBackOff")
    assert w["message"] == f'Back-off pulling image "ghost:1.0": ErrImagePull: {message}'
    await until(lambda: ("Normal", "BackOff", 'Back-off pulling image "ghost:1.0"') in events(fake, "ghost"),
                "the BackOff event")
    assert ("Warning", "Failed", "Error: ImagePullBackOff") in events(fake, "ghost")
    assert status_of(fake, "ghost")["phase"] == "Pending"
    assert rt.pulls == ["ghost:1.0"]


async def test_an_unreachable_registry_falls_back_to_the_exact_local_image(world):
    fake, rt, _ = world
    rt.present["nginx:latest"] = ImageInfo("nginx:latest", "sha256:loaded")
    error = "dial tcp: lookup registry-1.docker.io: no such host"
    rt.registry["nginx:latest"] = ImagePullError(error, unreachable=True)
    await fake.create(PODS, pod("offline", "nginx"), "default")
    await until(lambda: running(fake, "offline"), "the local image running")
    assert rt.pulls == ["nginx:latest"] and rt.started[0].image_id == "sha256:loaded"
    want = ("Warning", "PullFailedUsingLocal", f'Failed to pull image "nginx": {error}; no registry could be '
                                               "reached, so the image present on this node is used")
    await until(lambda: want in events(fake, "offline"), "the fallback event")
    assert "Failed" not in reasons(fake, "offline")


async def test_an_unreachable_registry_without_a_local_image_is_err_image_pull(world):
    fake, rt, _ = world
    rt.registry["nginx:latest"] = ImagePullError("connection refused", unreachable=True)
    await fake.create(PODS, pod("offline", "nginx"), "default")
    await until(lambda: "Error: ErrImagePull" in [m for _, _, m in events(fake, "offline")], "ErrImagePull")
    assert waiting(fake, "offline").get("reason") in ("ErrImagePull", "ImagePullBackOff") and rt.started == []
    failed = [m for _, _, m in events(fake, "offline") if m.startswith("Failed to pull image")]
    assert failed and "connection refused" in failed[0] and "pocketkube image load" in failed[0]


async def test_a_registry_that_answers_is_never_overridden_by_a_local_image(world):
    fake, rt, _ = world
    rt.present["nginx:latest"] = ImageInfo("nginx:latest", "sha256:loaded")
    rt.registry["nginx:latest"] = ImagePullError("unauthorized: authentication required")
    await fake.create(PODS, pod("denied", "nginx"), "default")
    await until(lambda: "Error: ErrImagePull" in [m for _, _, m in events(fake, "denied")], "ErrImagePull")
    assert waiting(fake, "denied").get("reason") in ("ErrImagePull", "ImagePullBackOff") and rt.started == []


async def test_an_invalid_image_name_waits_without_retries_or_repeated_events(world):
    fake, rt, _ = world
    await fake.create(PODS, pod("bad", "Nginx:1"), "default")
    w = await until(lambda: waiting(fake, "bad").get("reason") == "InvalidImageName" and waiting(fake, "bad"),
                    "InvalidImageName")
    message = ('Failed to apply default image tag "Nginx:1": couldn\'t parse image reference "Nginx:1": '
               "invalid reference format: repository name (library/Nginx) must be lowercase")
    assert w["message"] == message
    await until(lambda: len(events(fake, "bad")) == 2, "two events")
    p = await fake.get(PODS, "default", "bad")
    p["metadata"]["labels"] = {"touched": "yes"}
    await fake.update(PODS, p)
    await until(lambda: (status_of(fake, "bad").get("conditions") is not None), "a status")
    await asyncio.sleep(0.05)  # let the woken worker sync; nothing new must come of it
    got = fake.objects(EVENTS, "default")
    assert [(e["reason"], e["message"], e.get("count", 1)) for e in got] == [
        ("InspectFailed", message, 1), ("Failed", "Error: InvalidImageName", 1)]
    assert rt.statuses == [] and rt.pulls == [] and status_of(fake, "bad")["phase"] == "Pending"


async def test_sandbox_failure_keeps_the_pod_pending_and_is_retried(world):
    fake, rt, k = world
    k.sandbox_backoff = Backoff(initial=0.01, maximum=0.02)
    rt.sandbox_failures = 2
    rt.present["app:1"] = ImageInfo("app:1", "sha256:app")
    await fake.create(PODS, pod("sb", "app:1"), "default")
    await until(lambda: "FailedCreatePodSandBox" in reasons(fake, "sb"), "the sandbox event")
    assert ("Warning", "FailedCreatePodSandBox",
            "Failed to create pod sandbox: can't get final child's PID from pipe: EOF") in events(fake, "sb")
    await until(lambda: running(fake, "sb"), "the container running after the retries")
    assert rt.sandbox_failures == 0 and status_of(fake, "sb")["podIP"] == "10.244.1.2"


async def test_sandbox_failure_status_is_pending_with_container_creating(world):
    fake, rt, k = world
    k.sandbox_backoff = Backoff(initial=60.0, maximum=60.0)
    rt.sandbox_failures = 100  # every try (the worker's own status write wakes it once more)
    await fake.create(PODS, pod("sb", "app:1"), "default")
    await until(lambda: waiting(fake, "sb").get("reason") == "ContainerCreating", "ContainerCreating")
    st = status_of(fake, "sb")
    assert st["phase"] == "Pending" and "podIP" not in st


async def test_create_error_is_create_container_error(world):
    fake, rt, _ = world
    rt.present["app:1"] = ImageInfo("app:1", "sha256:app")
    rt.create_error = 'failed to generate spec: no command specified'
    await fake.create(PODS, pod("noc", "app:1"), "default")
    w = await until(lambda: waiting(fake, "noc").get("reason") == "CreateContainerError" and waiting(fake, "noc"),
                    "CreateContainerError")
    assert w["message"] == "failed to generate spec: no command specified"
    await until(lambda: ("Warning", "Failed", "Error: failed to generate spec: no command specified")
                in events(fake, "noc"), "the Failed event")


async def test_pods_pulling_one_image_share_one_pull(world):
    fake, rt, _ = world
    rt.pull_gate = asyncio.Event()
    rt.registry["busybox:latest"] = ImageInfo("busybox:latest", "sha256:bb")
    for i in range(3):
        await fake.create(PODS, pod(f"p{i}", "busybox", command=["sleep", "60"]), "default")
    await until(lambda: all("Pulling" in reasons(fake, f"p{i}") for i in range(3)), "three pods pulling")
    rt.pull_gate.set()
    await until(lambda: all(running(fake, f"p{i}") for i in range(3)), "three pods running")
    assert rt.pulls == ["busybox:latest"]
    assert [c.command for c in rt.started] == [["sleep", "60"]] * 3


async def test_the_process_runtime_runs_a_command_whatever_its_image():
    fake = FakeClient()
    rt = FakeRuntime(name="process")
    k = Kubelet(fake, rt, NODE, "127.0.7.1")  # type: ignore[arg-type]
    await k.start()
    try:
        await fake.create(PODS, pod("cmd", "alpine", command=["sleep", "$(POD_IP)"]), "default")
        await until(lambda: running(fake, "cmd"), "the container running")
        assert rt.statuses == [] and rt.pulls == []
        assert rt.started[0].command == ["sleep", "10.244.1.2"] and rt.started[0].image == \
            "docker.io/library/alpine:latest"
        await until(lambda: ("Normal", "Pulled", 'Container image "alpine" already present on machine')
                    in events(fake, "cmd"), "the Pulled event")
    finally:
        await k.shutdown(kill_pods=True)


async def test_deleting_a_pod_removes_its_sandbox(world):
    fake, rt, _ = world
    rt.present["app:1"] = ImageInfo("app:1", "sha256:app")
    p = await fake.create(PODS, pod("gone", "app:1"), "default")
    await until(lambda: running(fake, "gone"), "the container running")
    await fake.delete(PODS, "default", "gone", grace_period=0)
    await until(lambda: p["metadata"]["uid"] in rt.removed, "the sandbox removed")
    assert p["metadata"]["uid"] not in rt.sandboxes
