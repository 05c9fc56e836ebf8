"""The kubelet's container log manager over CRI: every `period` seconds, rotate the log of each
running container that reached the policy's size (decisions in logrotation; this module only does
the file system and CRI calls, as pkg/kubelet/logs/container_log_manager.go).

A failure on one container is logged and retried next round; it never stops the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import gzip
import logging
import os
import shutil
import time
from collections.abc import Callable

from pocketkube.agent import logrotation
from pocketkube.agent.runtime.cri.client import CriClient, CriError, Unavailable
from pocketkube.agent.runtime.cri.translate import ConfigError, parse_quantity
from pocketkube.agent.runtime.cri.v1 import api_pb2 as api

log = logging.getLogger(__name__)


def parse_policy(max_size: str, max_files: int) -> logrotation.LogRotatePolicy | None:
    """The policy for the kubelet's `--container-log-max-size` / `--container-log-max-files`;
    None when the size is negative (rotation off, as upstream). ValueError with the kubelet's
    message for a bad value."""
    if max_files <= 1:
        raise ValueError(f"invalid MaxFiles {max_files}, must be > 1")
    try:
        size = parse_quantity(max_size)
    except ConfigError as e:
        raise ValueError(f"failed to parse container log max size {max_size!r}: {e}") from None
    if size.denominator != 1:
        raise ValueError(f"failed to parse container log max size {max_size!r}: invalid max log size")
    return None if size < 0 else logrotation.LogRotatePolicy(int(size), max_files)


def compress(path: str) -> None:
    """compressLog: gzip `path` to `path.gz` through a `.tmp` file (an interrupted run leaves only
    the .tmp, removed next round), keeping the mode, then remove `path`."""
    tmp = path + logrotation.TMP_SUFFIX
    mode = os.stat(path).st_mode & 0o7777
    try:
        with open(path, "rb") as src, open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode), "wb") as raw:
            with gzip.GzipFile(fileobj=raw, mode="wb", filename="", mtime=0) as out:
                shutil.copyfileobj(src, out, 1 << 20)
        os.rename(tmp, path + logrotation.COMPRESS_SUFFIX)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    os.unlink(path)


def remove_logs(log_path: str) -> None:
    """Clean: the live log and every rotation of it."""
    for p in [log_path, *glob.glob(glob.escape(log_path) + ".*")]:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(p)


class ContainerLogManager:
    def __init__(self, client: CriClient, policy: logrotation.LogRotatePolicy, *,
                 period: float = logrotation.MONITOR_PERIOD, clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self.policy = policy
        self.period = period
        self.clock = clock

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.period)
            try:
                await self.rotate_logs()
            except Unavailable as e:
                log.debug("containerd unavailable for log rotation: %s", e)
            except CriError as e:
                log.warning("Failed to rotate container logs: %s", e)

    async def rotate_logs(self) -> None:
        """One round: only running containers (an exited one writes no more)."""
        for c in await self.client.list_containers():
            if c.state == api.CONTAINER_RUNNING:
                try:
                    await self.process_container(c.id)
                except (CriError, OSError) as e:
                    log.warning("Failed to rotate log for container %s: %s", c.id, e)

    async def process_container(self, cid: str) -> bool:
        """Rotate the container's log if it is due; True when it was rotated."""
        path = (await self.client.container_status(cid)).status.log_path
        if not path:
            return False
        try:
            size = os.stat(path).st_size
        except FileNotFoundError:
            # Renamed but not reopened (an earlier round failed half-way): have it recreated.
            await self.client.reopen_container_log(cid)
            size = os.stat(path).st_size
        if not logrotation.needs_rotation(size, self.policy):
            return False
        return await self.rotate_log(cid, path)

    async def rotate_log(self, cid: str, path: str) -> bool:
        rotated = glob.glob(glob.escape(path) + ".*")
        plan = logrotation.plan_rotation(path, rotated, self.policy, self.clock())
        for p in plan.remove:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(p)
        for p in plan.compress:
            await asyncio.to_thread(compress, p)  # megabytes of gzip: off the event loop
        if plan.rotate_to is None:
            return False
        os.rename(path, plan.rotate_to)
        try:
            await self.client.reopen_container_log(cid)
        except CriError:
            # Back to where it was, to try again next round (containerd refuses a container that
            # stopped meanwhile; its last output is then where `kubectl logs` looks).
            try:
                os.rename(plan.rotate_to, path)
            except OSError as e:
                log.error("Failed to rename rotated log %s back to %s: %s", plan.rotate_to, path, e)
            raise
        return True
