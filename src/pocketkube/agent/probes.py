"""Container probes (startup, liveness, readiness) as the kubelet runs them.

One ProbeWorker per probe of a running container: initialDelaySeconds, then one check every
periodSeconds, each bounded by timeoutSeconds; the result flips after successThreshold
successes or failureThreshold failures in a row. Failure messages follow the kubelet's.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from pocketkube.agent.runtime.interface import ExecResult, StartError

USER_AGENT = "kube-probe/1.32"


@dataclass
class ProbeResult:
    success: bool
    message: str = ""


# Runs a command in the probed container (argv, timeout); the runtime decides what that means.
ExecFn = Callable[[list[str], float], Awaitable[ExecResult]]


@dataclass
class ProbeTarget:
    """Where a probe goes: the pod IP, the container's ports, and how to run a command in it."""

    pod_ip: str
    container: dict
    exec: ExecFn | None = None


def resolve_port(port: int | str, container: dict) -> int:
    if isinstance(port, int) or (isinstance(port, str) and port.isdigit()):
        return int(port)
    for p in container.get("ports") or []:
        if p.get("name") == port:
            return int(p["containerPort"])
    raise ValueError(f"couldn't find port {port!r} in the container's ports")


async def http_get(spec: dict, target: ProbeTarget, timeout: float) -> ProbeResult:
    scheme = (spec.get("scheme") or "HTTP").lower()
    host = spec.get("host") or target.pod_ip
    try:
        port = resolve_port(spec.get("port", 80), target.container)
    except ValueError as e:
        return ProbeResult(False, str(e))
    path = spec.get("path") or "/"
    if not path.startswith("/"):
        path = "/" + path
    url = f"{scheme}://{host}:{port}{path}"
    headers = {"Host": f"{host}:{port}", "User-Agent": USER_AGENT, "Accept": "*/*", "Connection": "close"}
    for h in spec.get("httpHeaders") or []:
        headers[h.get("name", "")] = h.get("value", "")
    request = f"GET {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    ctx = _insecure_tls() if scheme == "https" else None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port, ssl=ctx)
            try:
                writer.write(request.encode("latin-1"))
                await writer.drain()
                status_line = await reader.readline()
            finally:
                writer.close()
    except TimeoutError:
        return ProbeResult(False, f'Get "{url}": context deadline exceeded '
                                  "(Client.Timeout exceeded while awaiting headers)")
    except OSError as e:
        return ProbeResult(False, f'Get "{url}": {_dial_error(host, port, e)}')
    parts = status_line.decode("latin-1").split()
    if len(parts) < 2 or not parts[1].isdigit():
        return ProbeResult(False, f'Get "{url}": malformed HTTP response {status_line[:80]!r}')
    code = int(parts[1])
    if 200 <= code < 400:
        return ProbeResult(True)
    return ProbeResult(False, f"HTTP probe failed with statuscode: {code}")


def _insecure_tls() -> ssl.SSLContext:
    # The kubelet does not verify probe certificates either.
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _dial_error(host: str, port: int, e: OSError) -> str:
    reason = {111: "connection refused", 113: "no route to host", 101: "network is unreachable"}.get(
        e.errno or 0, (e.strerror or str(e)).lower())
    return f"dial tcp {host}:{port}: connect: {reason}"


async def tcp_socket(spec: dict, target: ProbeTarget, timeout: float) -> ProbeResult:
    host = spec.get("host") or target.pod_ip
    try:
        port = resolve_port(spec.get("port", 0), target.container)
    except ValueError as e:
        return ProbeResult(False, str(e))
    try:
        async with asyncio.timeout(timeout):
            _, writer = await asyncio.open_connection(host, port)
            writer.close()
    except TimeoutError:
        return ProbeResult(False, f"dial tcp {host}:{port}: i/o timeout")
    except OSError as e:
        return ProbeResult(False, _dial_error(host, port, e))
    return ProbeResult(True)


async def exec_command(spec: dict, target: ProbeTarget, timeout: float) -> ProbeResult:
    argv = spec.get("command") or []
    if not argv:
        return ProbeResult(False, "exec probe has no command")
    if target.exec is None:
        return ProbeResult(False, "exec probes are not supported for this container")
    try:
        result = await target.exec(list(argv), timeout)
    except StartError as e:
        return ProbeResult(False, str(e))
    if result.exit_code is None:
        return ProbeResult(False, f"command {argv!r} timed out")
    if result.exit_code == 0:
        return ProbeResult(True)
    # The kubelet reports an exec probe's output as its failure message, even when it is empty.
    return ProbeResult(False, result.output.strip())


async def run_probe(probe: dict, target: ProbeTarget) -> ProbeResult:
    timeout = float(probe.get("timeoutSeconds") or 1)
    if "httpGet" in probe:
        return await http_get(probe["httpGet"], target, timeout)
    if "tcpSocket" in probe:
        return await tcp_socket(probe["tcpSocket"], target, timeout)
    if "exec" in probe:
        return await exec_command(probe["exec"], target, timeout)
    return ProbeResult(False, "probe has no handler this node supports (httpGet, tcpSocket, exec)")


KINDS = {"startup": "Startup", "liveness": "Liveness", "readiness": "Readiness"}
INITIAL = {"startup": False, "liveness": True, "readiness": False}

ProbeFn = Callable[[dict, ProbeTarget], Awaitable[ProbeResult]]


class ProbeWorker:
    """Runs one probe; calls on_change(kind, ok) when the result flips, on_failure(kind, message)
    for every failed attempt (the kubelet's Unhealthy events)."""

    def __init__(self, kind: str, probe: dict, target: ProbeTarget,
                 on_change: Callable[[str, bool], None], on_failure: Callable[[str, str], None],
                 probe_fn: ProbeFn = run_probe) -> None:
        self.kind = kind
        self.probe = probe
        self.target = target
        self.on_change = on_change
        self.on_failure = on_failure
        self.probe_fn = probe_fn
        self.ok = INITIAL[kind]
        self._successes = 0
        self._failures = 0

    def record(self, result: ProbeResult) -> bool:
        """Count one result; True when the probe's state flipped."""
        if result.success:
            self._successes, self._failures = self._successes + 1, 0
            flipped = not self.ok and self._successes >= int(self.probe.get("successThreshold") or 1)
        else:
            self._failures, self._successes = self._failures + 1, 0
            flipped = self.ok and self._failures >= int(self.probe.get("failureThreshold") or 3)
            self.on_failure(self.kind, f"{KINDS[self.kind]} probe failed: {result.message}")
        if flipped:
            self.ok = not self.ok
        return flipped

    async def run(self) -> None:
        await asyncio.sleep(float(self.probe.get("initialDelaySeconds") or 0))
        period = float(self.probe.get("periodSeconds") or 10)
        while True:
            if self.record(await self.probe_fn(self.probe, self.target)):
                self.on_change(self.kind, self.ok)
                if self.kind == "startup" or (self.kind == "liveness" and not self.ok):
                    return  # startup is done once passed; a failed liveness probe restarts the container
            await asyncio.sleep(period)
