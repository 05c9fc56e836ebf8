"""The pure parts of the agent's streaming: request parsing, the Status that ends an exec, what a
CRI error stream means, which commands cannot be executed."""

from __future__ import annotations

import json
import os

import pytest
from multidict import MultiDict

from pocketkube.agent.runtime.interface import StreamExit, StreamOptions
from pocketkube.agent.runtime.process_streams import exec_failure, exit_code_of
from pocketkube.agent.runtime.streamio import exec_start_failure, status_from_error_stream
from pocketkube.agent.streaming import protocol as p

pytestmark = pytest.mark.unit


def test_parse_exec_command_and_streams():
    q = MultiDict([("command", "sh"), ("command", "-c"), ("command", "echo hi"), ("stdin", "1"), ("stdout", "true"),
                   ("stderr", "1")])
    req = p.parse_exec(q)
    assert req.command == ["sh", "-c", "echo hi"]
    assert req.opts == StreamOptions(stdin=True, stdout=True, stderr=True, tty=False)


def test_parse_exec_tty_merges_stderr_and_attach_takes_no_command():
    req = p.parse_exec(MultiDict([("command", "sh"), ("stdout", "1"), ("stderr", "1"), ("tty", "1")]))
    assert req.opts == StreamOptions(stdin=False, stdout=True, stderr=False, tty=True)
    req = p.parse_exec(MultiDict([("command", "ignored"), ("stdout", "1")]), attach=True)
    assert req.command == []


@pytest.mark.parametrize(("query", "message"), [
    ([("stdout", "1")], "you must specify at least 1 command"),
    ([("command", "ls")], "you must specify at least 1 of stdin, stdout, stderr"),
    ([("command", "ls"), ("stdout", "0"), ("stderr", "false")], "you must specify at least 1 of stdin, stdout, stderr"),
])
def test_parse_exec_bad_input(query, message):
    with pytest.raises(ValueError, match=message):
        p.parse_exec(MultiDict(query))


@pytest.mark.parametrize(("query", "port", "message"), [
    ([("port", "8080")], 8080, None),
    ([], None, "exactly one port"),
    ([("port", "80"), ("port", "81")], None, "exactly one port"),
    ([("port", "http")], None, "must be an integer"),
    ([("port", "0")], None, "between 1 and 65535"),
    ([("port", "65536")], None, "between 1 and 65535"),
])
def test_parse_port(query, port, message):
    if message is None:
        assert p.parse_port(MultiDict(query)) == port
    else:
        with pytest.raises(ValueError, match=message):
            p.parse_port(MultiDict(query))


def test_parse_resize():
    assert p.parse_resize(b'{"Width":120,"Height":40}') == (120, 40)
    for bad in (b"", b"{", b'{"Width":1}', b'{"Width":"x","Height":1}', b'[1,2]', b'{"Width":-1,"Height":2}'):
        assert p.parse_resize(bad) is None
    assert p.frame(p.STDOUT, b"x") == b"\x01x"


def test_exit_status_as_the_kubelet_writes_it():
    assert p.exit_status(StreamExit(0)) == {"metadata": {}, "status": "Success"}
    assert p.exit_status(StreamExit(None)) == {"metadata": {}, "status": "Success"}  # attach: no exit code
    assert p.exit_status(StreamExit(42)) == {
        "metadata": {}, "status": "Failure", "message": "command terminated with non-zero exit code: exit status 42",
        "reason": "NonZeroExitCode", "details": {"causes": [{"reason": "ExitCode", "message": "42"}]}}
    failed = p.exit_status(StreamExit(None, "boom"))
    assert failed["reason"] == "InternalError" and failed["code"] == 500
    assert failed["message"] == "Internal error occurred: boom" and failed["details"]["causes"] == [{"message": "boom"}]


def test_error_stream_round_trips_and_older_protocols():
    for result in (StreamExit(0), StreamExit(7), StreamExit(None, "exec failed: x")):
        assert status_from_error_stream(json.dumps(p.exit_status(result)).encode()) == result
    assert status_from_error_stream(b"") == StreamExit(0)
    assert status_from_error_stream(b"plain text error") == StreamExit(None, "plain text error")
    assert status_from_error_stream(b"[]") == StreamExit(None, "[]")
    odd = {"status": "Failure", "reason": "NonZeroExitCode", "message": "m",
           "details": {"causes": [{"reason": "ExitCode", "message": "not a number"}]}}
    assert status_from_error_stream(json.dumps(odd).encode()).exit_code is None


def test_portforward_error_wording():
    assert p.portforward_error(80, "abc", "failed to connect") == "error forwarding port 80 to pod abc, uid : failed to connect"


def test_exec_failure_codes(tmp_path):
    exe = tmp_path / "tool"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    plain = tmp_path / "data"
    plain.write_text("x")
    plain.chmod(0o644)
    assert exec_failure("tool", str(tmp_path)) is None
    assert exec_failure(str(exe), "") is None
    assert exec_failure("nope", str(tmp_path)) == (127, 'exec: "nope": executable file not found in $PATH')
    code, message = exec_failure(str(tmp_path / "nope"), "")
    assert code == 127 and "no such file or directory" in message
    if os.geteuid() != 0 or not os.access(plain, os.X_OK):
        assert exec_failure(str(plain), "") == (126, f'exec: "{plain}": permission denied')
        assert exec_failure("data", str(tmp_path))[0] == 126
    assert exec_failure(str(tmp_path), "")[0] == 126  # a directory
    assert exec_failure("", "/bin")[0] == 127
    # Relative names are found from the container's directory, not the agent's.
    assert exec_failure("./tool", "", tmp_path) is None
    assert exec_failure("tool", ".", tmp_path) is None
    assert exec_failure("./tool", "")[0] == 127


def test_exit_code_of_a_signal():
    assert exit_code_of(0) == 0 and exit_code_of(3) == 3 and exit_code_of(-9) == 137


def test_exec_start_failure_from_containerd_errors():
    prefix = 'error executing command in container: failed to exec in container: failed to start exec "e1": '
    missing = 'OCI runtime exec failed: exec failed: unable to start container process: exec: "x": executable file not found in $PATH: unknown'
    assert exec_start_failure(prefix + missing) == (127, missing)
    denied = 'OCI runtime exec failed: exec failed: unable to start container process: exec: "/etc/passwd": permission denied: unknown'
    assert exec_start_failure(prefix + denied) == (126, denied)
    assert exec_start_failure("container is not running") is None
    assert exec_start_failure("OCI runtime exec failed: exec failed: cgroup is frozen: unknown") is None
