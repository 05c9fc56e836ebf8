"""What the runtimes' exec and attach sessions share: merging output streams into one ordered
read, and reading a CRI streaming server's error stream into how the session ended."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable

from pocketkube.agent.runtime.interface import StreamExit

CHUNK = 256 * 1024


class Output:
    """Output chunks of several sources on one queue; None once every source has ended."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[int, bytes] | None] = asyncio.Queue(maxsize=16)
        self.tasks: list[asyncio.Task] = []
        self._open = 0
        self._ended = False

    def pump(self, channel: int, read: Callable[[int], Awaitable[bytes]]) -> None:
        """Relay `read(n)` (b"" at its end) as `channel` until it ends."""
        self._open += 1
        self.tasks.append(asyncio.get_running_loop().create_task(self._pump(channel, read)))

    async def _pump(self, channel: int, read: Callable[[int], Awaitable[bytes]]) -> None:
        try:
            while True:
                try:
                    data = await read(CHUNK)
                except OSError:  # EIO from a pty's master once the terminal's last user is gone
                    data = b""
                if not data:
                    break
                await self.queue.put((channel, data))
        finally:
            self._open -= 1
            if self._open == 0:
                await self.queue.put(None)

    async def read(self) -> tuple[int, bytes] | None:
        if not self.tasks or self._ended:
            return None
        item = await self.queue.get()
        if item is None:
            self._ended = True
            self.queue.put_nowait(None)  # for any other reader waiting
        return item

    async def cancel(self) -> None:
        """Stop pumping; a reader waiting (now or later) gets None."""
        for t in self.tasks:
            t.cancel()
        for t in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(None)


def status_from_error_stream(data: bytes) -> StreamExit:
    """What a CRI streaming server's error stream said: nothing (success), a Status (v4: the exit
    code in its causes), or plain text (older protocols)."""
    text = data.strip()
    if not text:
        return StreamExit(0)
    try:
        status = json.loads(text)
    except ValueError:
        return StreamExit(None, text.decode(errors="replace"))
    if not isinstance(status, dict):
        return StreamExit(None, text.decode(errors="replace"))
    if status.get("status") == "Success":
        return StreamExit(0)
    causes = [c for c in (status.get("details") or {}).get("causes") or [] if isinstance(c, dict)]
    if status.get("reason") == "NonZeroExitCode":
        for cause in causes:
            if cause.get("reason") == "ExitCode":
                with contextlib.suppress(TypeError, ValueError):
                    return StreamExit(int(cause.get("message")))
    # An InternalError's cause is the bare error (its message adds "Internal error occurred: ").
    inner = causes[0].get("message") if causes else None
    return StreamExit(None, str(inner or status.get("message") or text.decode(errors="replace")))


def exec_start_failure(error: str) -> tuple[int, str] | None:
    """(exit code, message) when a runtime's error says the command could not be executed at all,
    as a shell (and Docker) report it: 127 when there is no such executable, 126 when it cannot be
    executed; the message from runc's words on. None for any other error."""
    start = error.find("OCI runtime exec failed")
    if start < 0 or "exec failed" not in error:
        return None
    message = error[start:]
    if "executable file not found" in message or "no such file or directory" in message:
        return 127, message
    if "permission denied" in message or "exec format error" in message or "is a directory" in message:
        return 126, message
    return None
