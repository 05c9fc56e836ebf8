"""Exec, attach and port-forward for the process runtime.

exec: the command starts as a child of the agent in its own session (so the whole group can be
killed when the client goes away or the container stops), in the container's working directory
with its environment and user, through pipes or, with a tty, a pseudo-terminal that becomes its
controlling terminal (`setsid --ctty`). A command that cannot be executed is reported as a shell
and runc-based runtimes do: a message on stderr and exit code 127 (not found) or 126.

attach: the container's output as it is written to its log from now on (stdout and stderr are
one raw stream in the process runtime, so both arrive on stdout), and its stdin when its spec asks
for one: the runtime then started it reading a FIFO whose write end the agent keeps (see
process.py); stdinOnce closes that end after the first attach ends. A tty in the container spec
is not emulated: the process runtime's containers never have a terminal.

port-forward: a TCP connection to the pod's IP. The process runtime's pods share the host's
network namespace, so "localhost inside the pod" is the pod's own 127/8 address: a server bound
to it or to 0.0.0.0 is reachable, one bound to 127.0.0.1 (the host's loopback) is not.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import os
import signal
import struct
import termios
from pathlib import Path

from pocketkube.agent.runtime.interface import STDERR, STDOUT, StreamError, StreamExit, StreamOptions
from pocketkube.agent.runtime.streamio import CHUNK, Output
from pocketkube.agent.runtime.tcp_stream import TcpPortStream, connect_error

SETSID = "/usr/bin/setsid"
ATTACH_POLL = 0.05
# After the command's main process exits, how long output from what it left running (holding
# its pipes open) is still relayed before the session ends and the group is killed.
DRAIN_AFTER_EXIT = 1.0


def exec_failure(name: str, path: str, cwd: str | Path = ".") -> tuple[int, str] | None:
    """(exit code, message) when `name` cannot be executed with PATH `path` from `cwd`, as a
    shell reports it: 127 when there is no such file, 126 when it exists but is not executable
    (or a directory)."""
    if "\0" in name or not name:
        return 127, f'exec: "{name}": executable file not found in $PATH'
    if "/" in name:
        candidates = [name]
    else:
        candidates = [os.path.join(d or ".", name) for d in path.split(":")]
    candidates = [os.path.join(cwd, c) for c in candidates]  # relative ones are from its directory
    denied = None
    for c in candidates:
        if os.path.isfile(c) and os.access(c, os.X_OK):
            return None
        if os.path.exists(c):
            denied = c
    if denied is not None:
        return 126, f'exec: "{name}": permission denied'
    if "/" in name:
        return 127, f'exec: "{name}": stat {name}: no such file or directory'
    return 127, f'exec: "{name}": executable file not found in $PATH'


def exit_code_of(returncode: int) -> int:
    """A killed process exits with 128 + its signal, as runtimes report it."""
    return 128 - returncode if returncode < 0 else returncode


def _kill_group(pid: int) -> None:
    """SIGKILL the process group `pid` leads and the process itself: a tty session's command
    that has not called setsid yet is not leading its group."""
    for kill in (os.killpg, os.kill):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            kill(pid, signal.SIGKILL)


class ProcessExec:
    """One exec session: a process group started by `start`."""

    def __init__(self, proc: asyncio.subprocess.Process | None, opts: StreamOptions, *,
                 failure: tuple[int, str] | None = None) -> None:
        self.proc, self.opts = proc, opts
        self.output = Output()
        self._failure = failure  # the command could not be executed: (exit code, message)
        self._failure_sent = False
        self._stdin: asyncio.StreamWriter | None = None
        self._master: int | None = None  # the pty's master, with a tty
        self._closed = False
        self._drain_until: float | None = None
        self._transports: list[asyncio.BaseTransport] = []

    @classmethod
    async def start(cls, argv: list[str], opts: StreamOptions, *, env: dict[str, str], cwd: str | Path,
                    prefix: list[str], path: str) -> ProcessExec:
        if not argv:
            raise StreamError("no command given")
        failure = exec_failure(argv[0], path, cwd)
        if failure is not None:
            return cls(None, opts, failure=failure)
        try:
            if opts.tty:
                return await cls._start_tty(argv, opts, env=env, cwd=cwd, prefix=prefix)
            return await cls._start_pipes(argv, opts, env=env, cwd=cwd, prefix=prefix)
        except PermissionError:
            return cls(None, opts, failure=(126, f'exec: "{argv[0]}": permission denied'))
        except OSError as e:
            if e.errno == errno.ENOENT:
                return cls(None, opts, failure=(127, f'exec: "{argv[0]}": executable file not found in $PATH'))
            if e.errno == errno.ENOEXEC:
                return cls(None, opts, failure=(126, f'exec: "{argv[0]}": exec format error'))
            raise StreamError(f'exec: "{argv[0]}": {e.strerror}') from None
        except ValueError as e:  # a NUL byte in an argument
            raise StreamError(f'exec: "{argv[0]}": {e}') from None

    @classmethod
    async def _start_pipes(cls, argv, opts, *, env, cwd, prefix) -> ProcessExec:
        pipe, null = asyncio.subprocess.PIPE, asyncio.subprocess.DEVNULL
        proc = await asyncio.create_subprocess_exec(
            *prefix, *argv, env=env, cwd=cwd, stdin=pipe if opts.stdin else null,
            stdout=pipe if opts.stdout else null, stderr=pipe if opts.stderr else null,
            start_new_session=True, limit=CHUNK)
        session = cls(proc, opts)
        session._stdin = proc.stdin
        if proc.stdout is not None:
            session.output.pump(STDOUT, proc.stdout.read)
        if proc.stderr is not None:
            session.output.pump(STDERR, proc.stderr.read)
        return session

    @classmethod
    async def _start_tty(cls, argv, opts, *, env, cwd, prefix) -> ProcessExec:
        master, slave = os.openpty()
        try:
            # setsid without a fork (the child is no group leader), then the pty becomes the
            # session's controlling terminal: a shell gets job control and ^C.
            proc = await asyncio.create_subprocess_exec(
                SETSID, "--ctty", *prefix, *argv, env=env, cwd=cwd, stdin=slave, stdout=slave, stderr=slave)
        except BaseException:
            os.close(master)
            raise
        finally:
            os.close(slave)
        session = cls(proc, opts)
        session._master = master
        loop = asyncio.get_running_loop()
        try:
            reader = asyncio.StreamReader(limit=CHUNK)
            transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader),
                                                        os.fdopen(os.dup(master), "rb", buffering=0))
            session._transports.append(transport)
            wtransport, wprotocol = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin,
                                                                  os.fdopen(os.dup(master), "wb", buffering=0))
            session._transports.append(wtransport)
        except BaseException:
            await session.close()  # the command is killed, the terminal closed
            raise
        session._stdin = asyncio.StreamWriter(wtransport, wprotocol, None, loop) if opts.stdin else None
        if opts.stdout or opts.stderr:
            session.output.pump(STDOUT, reader.read)
        return session

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    async def write(self, data: bytes) -> None:
        if self._stdin is None or self._stdin.is_closing():
            return
        self._stdin.write(data)
        with contextlib.suppress(ConnectionError):
            await self._stdin.drain()

    async def close_stdin(self) -> None:
        if self._stdin is None or self._stdin.is_closing():
            return
        if self.opts.tty:
            await self.write(b"\x04")  # the terminal's EOF character: a tty cannot be half-closed
            return
        self._stdin.close()

    async def resize(self, width: int, height: int) -> None:
        if self._master is not None and width > 0 and height > 0:
            with contextlib.suppress(OSError):
                fcntl.ioctl(self._master, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))

    async def read(self) -> tuple[int, bytes] | None:
        if self._failure is not None:
            if self._failure_sent or not self.opts.stderr and not self.opts.tty:
                return None
            self._failure_sent = True
            return (STDOUT if self.opts.tty else STDERR), self._failure[1].encode() + b"\n"
        if self.proc is None:
            return None
        get = asyncio.ensure_future(self.output.read())
        try:
            if self._drain_until is None:
                exited = asyncio.ensure_future(self.proc.wait())
                await asyncio.wait({get, exited}, return_when=asyncio.FIRST_COMPLETED)
                exited.cancel()
                if get.done():
                    return get.result()
                # The main process is gone; what it left running may keep the pipes open.
                self._drain_until = asyncio.get_running_loop().time() + DRAIN_AFTER_EXIT
            async with asyncio.timeout_at(self._drain_until):
                return await asyncio.shield(get)
        except TimeoutError:
            return None
        finally:
            get.cancel()

    async def wait(self) -> StreamExit:
        if self._failure is not None:
            return StreamExit(self._failure[0])
        assert self.proc is not None
        return StreamExit(exit_code_of(await self.proc.wait()))

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.proc is not None:
            _kill_group(self.proc.pid)  # whatever the command started, too
            await self.proc.wait()
        await self.output.cancel()
        for t in self._transports:
            t.close()
        if self._stdin is not None and not self._stdin.is_closing():
            self._stdin.close()
        if self._master is not None:
            os.close(self._master)
            self._master = None


class ProcessAttach:
    """An attach to a running process container: its log from the current end on, until it exits;
    `stdin` is the write end of its stdin FIFO when it has one."""

    def __init__(self, log_path: str, exited: asyncio.Future, opts: StreamOptions, *,
                 stdin: int | None = None, on_stdin_closed=None) -> None:
        self.opts, self.exited = opts, exited
        self._log = open(log_path, "rb") if log_path and (opts.stdout or opts.stderr or opts.tty) else None
        if self._log is not None:
            self._log.seek(0, os.SEEK_END)
        self._stdin = stdin if opts.stdin else None
        self._on_stdin_closed = on_stdin_closed
        self._done = False

    async def write(self, data: bytes) -> None:
        while data and self._stdin is not None:
            try:
                n = os.write(self._stdin, data)
            except BlockingIOError:  # the FIFO is full: the container reads slower than we write
                if self.exited.done():
                    return
                await asyncio.sleep(ATTACH_POLL)
                continue
            except OSError:
                return
            data = data[n:]

    async def close_stdin(self) -> None:
        if self._stdin is not None:
            self._stdin = None
            if self._on_stdin_closed is not None:
                self._on_stdin_closed()

    async def resize(self, width: int, height: int) -> None:
        """The process runtime's containers have no terminal."""

    async def read(self) -> tuple[int, bytes] | None:
        if self._log is None:
            if not self._done:
                await asyncio.shield(self.exited)
                self._done = True
            return None
        while True:
            data = self._log.read(CHUNK)
            if data:
                return STDOUT, data
            if self.exited.done():
                # What it wrote between our last read and its exit has been read now.
                data = self._log.read(CHUNK)
                return (STDOUT, data) if data else None
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(ATTACH_POLL):
                    await asyncio.shield(self.exited)

    async def wait(self) -> StreamExit:
        return StreamExit()

    async def close(self) -> None:
        await self.close_stdin()
        if self._log is not None:
            self._log.close()
            self._log = None


async def connect_port(host: str, port: int) -> TcpPortStream:
    """A connection to the pod's `port` at its address; StreamError in the kubelet's words."""
    try:
        return await TcpPortStream.connect(host, port)
    except OSError as e:
        raise StreamError(connect_error(host, port, e)) from None
