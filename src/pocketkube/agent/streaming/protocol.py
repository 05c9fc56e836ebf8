"""The agent's side of the internal streaming protocol, pure parts: query parsing, the frames of
`v5.channel.k8s.io`, and the Status objects that end an exec (as the kubelet's remotecommand
server writes them on the error channel).

Exec and attach: binary WebSocket messages whose first byte is the channel: 0 stdin, 1 stdout,
2 stderr, 3 error (one JSON Status, then the agent closes), 4 resize ({"Width":W,"Height":H}),
255 close ([255, 0]: stdin reached EOF). Port-forward (`pocketkube.portforward.v1`): one TCP
connection per WebSocket; binary messages are data, an empty one half-closes its sender's
direction, a text message from the agent is the error for this connection.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from pocketkube.agent.runtime.interface import StreamExit, StreamOptions

EXEC_PROTOCOL = "v5.channel.k8s.io"
PORTFORWARD_PROTOCOL = "pocketkube.portforward.v1"

STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255

_TRUE = ("1", "true", "True")


def _flag(query, name: str) -> bool:
    return query.get(name, "") in _TRUE


@dataclass(frozen=True)
class ExecRequest:
    command: list[str]
    opts: StreamOptions


def parse_exec(query, *, attach: bool = False) -> ExecRequest:
    """The command and streams of an exec (or attach) request; ValueError with the message."""
    command = [] if attach else list(query.getall("command", []))
    if not attach and not command:
        raise ValueError("you must specify at least 1 command")
    opts = StreamOptions(stdin=_flag(query, "stdin"), stdout=_flag(query, "stdout"),
                         stderr=_flag(query, "stderr"), tty=_flag(query, "tty"))
    if not (opts.stdin or opts.stdout or opts.stderr):
        raise ValueError("you must specify at least 1 of stdin, stdout, stderr")
    if opts.tty and opts.stderr:
        # With a terminal stdout and stderr are one stream, as upstream's remotecommand insists.
        opts = StreamOptions(stdin=opts.stdin, stdout=opts.stdout, stderr=False, tty=True)
    return ExecRequest(command, opts)


def parse_port(query) -> int:
    """The one port of a port-forward request; ValueError with the message."""
    ports = query.getall("port", [])
    if len(ports) != 1:
        raise ValueError("exactly one port must be given")
    try:
        port = int(ports[0])
    except ValueError:
        raise ValueError(f"invalid port {ports[0]!r}: must be an integer") from None
    if not 0 < port < 65536:
        raise ValueError(f"invalid port {port}: must be between 1 and 65535, inclusive")
    return port


def frame(channel: int, data: bytes) -> bytes:
    return bytes((channel,)) + data


def parse_resize(payload: bytes) -> tuple[int, int] | None:
    """(width, height) of a resize message; None when it is not one."""
    try:
        size = json.loads(payload)
        width, height = int(size["Width"]), int(size["Height"])
    except (ValueError, KeyError, TypeError):
        return None
    return (width, height) if width >= 0 and height >= 0 else None


def exit_status(result: StreamExit) -> dict:
    """The Status written on the error channel when an exec or attach ends."""
    if result.error is not None:
        # apierrors.NewInternalError's shape
        return {"metadata": {}, "status": "Failure", "message": f"Internal error occurred: {result.error}",
                "reason": "InternalError", "details": {"causes": [{"message": result.error}]}, "code": 500}
    if not result.exit_code:
        return {"metadata": {}, "status": "Success"}
    code = result.exit_code
    return {"metadata": {}, "status": "Failure",
            "message": f"command terminated with non-zero exit code: exit status {code}",
            "reason": "NonZeroExitCode", "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]}}


def portforward_error(port: int, pod: str, reason: str) -> str:
    """The text sent for a connection that could not be forwarded, in the kubelet's words."""
    return f"error forwarding port {port} to pod {pod}, uid : {reason}"
