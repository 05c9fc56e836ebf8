"""The query parameters of pods/exec, pods/attach and pods/portforward (PodExecOptions,
PodAttachOptions, PodPortForwardOptions), parsed and checked as kube-apiserver and the kubelet do."""

from __future__ import annotations

from dataclasses import dataclass

from pocketkube.api import errors


@dataclass(frozen=True)
class ExecOptions:
    command: tuple[str, ...] = ()
    stdin: bool = False
    stdout: bool = False
    stderr: bool = False
    tty: bool = False
    attach: bool = False


def query_bool(values: list[str]) -> bool:
    """A boolean query parameter as the API's conversion reads it: absent, "0" or "false" (any
    case) is false, anything else true."""
    if not values:
        return False
    return not (values[0] == "0" or values[0].lower() == "false")


def parse_exec_options(query, *, attach: bool) -> ExecOptions:
    """ExecOptions from a request's query (a MultiDict: `command` repeats); 400 as upstream for a
    request that asks for no stream (the kubelet's check) or, for exec, no command."""
    def flag(name: str) -> bool:
        return query_bool(query.getall(name, []))
    tty, stdin, stdout, stderr = flag("tty"), flag("stdin"), flag("stdout"), flag("stderr")
    if tty and stderr:
        stderr = False  # a terminal has one output stream (the kubelet drops stderr too)
    if not (stdin or stdout or stderr):
        raise errors.BadRequest("you must specify at least 1 of stdin, stdout, stderr")
    command = () if attach else tuple(query.getall("command", []))
    if not attach and not command:
        raise errors.BadRequest("you must specify at least one command for the container")
    return ExecOptions(command, stdin, stdout, stderr, tty, attach)


def parse_ports(query) -> list[int]:
    """The ports of a WebSocket port-forward: `ports` (the API's name) or `port` (the kubelet's),
    each repeated or comma-separated; 400 with the kubelet's wording otherwise."""
    raw = [*query.getall("ports", []), *query.getall("port", [])]
    if not raw:
        raise errors.BadRequest('query parameter "port" is required')
    ports: list[int] = []
    for value in raw:
        if not value:
            raise errors.BadRequest('query parameter "port" cannot be empty')
        for p in value.split(","):
            if not p.isdigit() or int(p) > 65535:
                raise errors.BadRequest(f'unable to parse "{value}" as a port: strconv.ParseUint: parsing '
                                        f'"{p}": {"value out of range" if p.isdigit() else "invalid syntax"}')
            if int(p) < 1:
                raise errors.BadRequest(f'port "{value}" must be > 0')
            ports.append(int(p))
    return ports

