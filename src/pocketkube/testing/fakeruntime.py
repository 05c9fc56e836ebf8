"""A runtime in memory for kubelet tests: the Runtime protocol with scripted images, sandboxes,
exec results and failures, recording what the kubelet asked of it."""

from __future__ import annotations

import asyncio
from pathlib import Path

from pocketkube.agent.runtime.interface import (
    ContainerConfig,
    ContainerHistory,
    ContainerRecord,
    CreateError,
    ExecResult,
    ImageInfo,
    ImagePullError,
    RegistryAuth,
    SandboxError,
)
from pocketkube.api.timestamps import now_rfc3339


class FakeRuntime:
    def __init__(self, name: str = "containerd") -> None:
        self.name = name
        self.present: dict[str, ImageInfo] = {}
        self.registry: dict[str, ImageInfo | Exception] = {}
        self.pulls: list[str] = []
        self.pull_auths: list[RegistryAuth | None] = []
        self.required_auth: RegistryAuth | None = None  # a registry that wants these credentials
        self.statuses: list[str] = []
        self.pull_gate: asyncio.Event | None = None
        self.sandbox_failures = 0
        self.sandboxes: dict[str, str] = {}
        self.create_error: str | None = None
        self.started: list[ContainerConfig] = []
        self.removed: list[str] = []
        self._histories: dict[tuple[str, str], ContainerHistory] = {}
        self._exits: dict[str, asyncio.Future] = {}
        self.exec_results: dict[tuple[str, ...], ExecResult] = {}  # argv → result (default: exit 0)
        self.execs: list[tuple[str, list[str]]] = []  # (container, argv)
        self.stops: list[tuple[str, float]] = []  # (container, grace)
        self.stopped_sandboxes: list[str] = []  # pod uids whose sandbox a finished pod gave up

    async def run_pod_sandbox(self, pod: dict) -> str:
        uid = pod["metadata"]["uid"]
        if self.sandbox_failures:
            self.sandbox_failures -= 1
            raise SandboxError("can't get final child's PID from pipe: EOF")
        return self.sandboxes.setdefault(uid, f"10.244.1.{len(self.sandboxes) + 2}")

    async def image_status(self, image: str) -> ImageInfo | None:
        self.statuses.append(image)
        return self.present.get(image)

    async def pull_image(self, image: str, auth: RegistryAuth | None = None) -> ImageInfo:
        self.pulls.append(image)
        self.pull_auths.append(auth)
        if self.required_auth is not None and auth != self.required_auth:
            raise ImagePullError(f"{image}: 401 Unauthorized")
        if self.pull_gate is not None:
            await self.pull_gate.wait()
        result = self.registry.get(image, ImagePullError(f"{image}: not found"))
        if isinstance(result, Exception):
            raise result
        self.present[image] = result
        return result

    def can_switch_user(self) -> bool:
        return False

    def on_sandbox_lost(self, callback) -> None:
        self.sandbox_lost = callback  # a test calls it to simulate a dead pause container

    async def version(self) -> str:
        return f"{self.name}://fake"

    async def exec_sync(self, pod_uid: str, name: str, argv: list[str], **_kwargs) -> ExecResult:
        self.execs.append((name, list(argv)))
        return self.exec_results.get(tuple(argv), ExecResult(0))

    def log_path(self, pod_uid: str, name: str, restart_count: int) -> Path:
        return Path("/nonexistent") / pod_uid / name / f"{restart_count}.log"

    def container_dir(self, pod_uid: str, name: str) -> Path:
        return Path("/nonexistent") / pod_uid / name

    async def start(self, cfg: ContainerConfig) -> ContainerRecord:
        if self.create_error:
            raise CreateError(self.create_error)
        self.started.append(cfg)
        rec = ContainerRecord(id=f"c{len(self.started)}", name=cfg.name, pid=1000 + len(self.started), start_ticks=0,
                              started_at=now_rfc3339(), restart_count=cfg.restart_count, log_path="",
                              image=cfg.image, image_id=cfg.image_id, log_format="cri", scheme="containerd")
        prev = self._histories.get((cfg.pod_uid, cfg.name))
        self._histories[(cfg.pod_uid, cfg.name)] = ContainerHistory(rec, prev.current if prev else None)
        self._exits[rec.id] = asyncio.get_running_loop().create_future()
        return rec

    def record_failed_start(self, pod_uid: str, name: str, restart_count: int, message: str) -> ContainerRecord:
        raise AssertionError("not expected in these tests")

    def exited(self, record: ContainerRecord) -> asyncio.Future:
        fut = self._exits.get(record.id)
        if fut is None:
            fut = asyncio.get_running_loop().create_future()
            fut.set_result(record)
        return fut

    async def stop(self, record: ContainerRecord, grace: float) -> None:
        self.stops.append((record.name, grace))
        if record.running:
            record.exit_code, record.reason, record.finished_at = 137, "Error", now_rfc3339()
            self._exits[record.id].set_result(record)

    def history(self, pod_uid: str, name: str) -> ContainerHistory | None:
        return self._histories.get((pod_uid, name))

    def running(self) -> list[tuple[str, ContainerRecord]]:
        return [(uid, h.current) for (uid, _), h in self._histories.items() if h.current.running]

    async def usage(self) -> list:
        """No cgroups here: every running container uses nothing."""
        return []

    async def adopt_all(self) -> None:
        pass

    def pods(self) -> dict[str, dict]:
        return {uid: {"ip": ip} for uid, ip in self.sandboxes.items()}

    def save_pod(self, pod_uid: str, info: dict) -> None:
        pass

    async def stop_pod_sandbox(self, pod_uid: str) -> None:
        self.stopped_sandboxes.append(pod_uid)

    async def remove_pod(self, pod_uid: str) -> None:
        for (uid, _), h in list(self._histories.items()):
            if uid == pod_uid:
                await self.stop(h.current, 0)
        self.removed.append(pod_uid)
        self.sandboxes.pop(pod_uid, None)
