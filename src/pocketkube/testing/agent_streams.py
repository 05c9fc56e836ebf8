"""A client of the node agent's streaming endpoints (exec, attach, port-forward), speaking the
internal protocol as the API server does: for tests that talk to an agent directly."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import aiohttp

EXEC_PROTOCOL = "v5.channel.k8s.io"
PORTFORWARD_PROTOCOL = "pocketkube.portforward.v1"


@dataclass
class ExecOutcome:
    stdout: bytes = b""
    stderr: bytes = b""
    status: dict | None = None
    closed_by_agent: bool = False
    frames: list[tuple[int, bytes]] = field(default_factory=list)

    @property
    def exit_code(self) -> int | None:
        """0 for Success, the code of NonZeroExitCode, None for anything else."""
        if self.status is None:
            return None
        if self.status.get("status") == "Success":
            return 0
        for cause in (self.status.get("details") or {}).get("causes") or []:
            if cause.get("reason") == "ExitCode":
                return int(cause["message"])
        return None


class AgentStreams:
    """`base` is http://<node IP>:<port>; `token` the node's token."""

    def __init__(self, base: str, token: str) -> None:
        self.base, self.token = base.rstrip("/"), token
        self.session = aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"})

    async def close(self) -> None:
        await self.session.close()

    @staticmethod
    def exec_query(command: list[str] | None = None, *, stdin: bool = False, stdout: bool = True,
                   stderr: bool = True, tty: bool = False, uid: str = "") -> list[tuple[str, str]]:
        q = [("command", c) for c in command or []]
        q += [(k, "1") for k, v in (("stdin", stdin), ("stdout", stdout), ("stderr", stderr), ("tty", tty)) if v]
        return q + ([("uid", uid)] if uid else [])

    async def connect(self, path: str, query: list[tuple[str, str]], protocol: str = EXEC_PROTOCOL):
        return await self.session.ws_connect(self.base + path, params=query, protocols=[protocol],
                                             max_msg_size=0, autoping=True)

    async def get(self, path: str, query: list[tuple[str, str]]) -> tuple[int, str]:
        """A request that the agent is expected to refuse before the upgrade: (status, body)."""
        headers = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
                   "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Protocol": EXEC_PROTOCOL}
        async with self.session.get(self.base + path, params=query, headers=headers) as r:
            return r.status, await r.text()

    async def run(self, path: str, query: list[tuple[str, str]], *, stdin: bytes | None = None,
                  close_stdin: bool = True, resize: tuple[int, int] | None = None) -> ExecOutcome:
        """One exec or attach to its end: stdin sent (then EOF), all output and the Status."""
        out = ExecOutcome()
        async with await self.connect(path, query) as ws:
            if resize is not None:
                await ws.send_bytes(b"\x04" + json.dumps({"Width": resize[0], "Height": resize[1]}).encode())
            if stdin is not None:
                await ws.send_bytes(b"\x00" + stdin)
                if close_stdin:
                    await ws.send_bytes(b"\xff\x00")
            await self.collect(ws, out)
        return out

    @staticmethod
    async def collect(ws, out: ExecOutcome) -> ExecOutcome:
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.BINARY or not msg.data:
                continue
            channel, data = msg.data[0], msg.data[1:]
            out.frames.append((channel, data))
            if channel == 1:
                out.stdout += data
            elif channel == 2:
                out.stderr += data
            elif channel == 3:
                out.status = json.loads(data)
        out.closed_by_agent = True
        return out
