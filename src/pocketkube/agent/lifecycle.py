"""Container lifecycle hooks (postStart, preStop) as the kubelet runs them.

A handler is one of `exec` (a command in the container, through the runtime), `httpGet` (to the
pod IP unless `host` says otherwise), `tcpSocket` (deprecated for hooks, but accepted) or `sleep`
(1.29+: `seconds`). postStart runs right after the container starts; if it fails the kubelet
kills the container (event FailedPostStartHook, waiting reason PostStartHookError). preStop runs
before the stop signal, within the termination grace period; whatever it uses comes off the
grace, but the container keeps at least MINIMUM_GRACE seconds for SIGTERM (upstream's
minimumGracePeriodInSeconds). A failed preStop is reported (FailedPreStopHook) and the stop goes on.
"""

from __future__ import annotations

import asyncio
import time

from pocketkube.agent.probes import ProbeResult, ProbeTarget, exec_command, http_get, tcp_socket

MINIMUM_GRACE = 2.0


def handler_kind(handler: dict) -> str:
    for kind in ("exec", "httpGet", "tcpSocket", "sleep"):
        if kind in handler:
            return kind
    return ""


def failure_message(hook: str, handler: dict, container: str, pod_ref: str, error: str) -> str:
    """The kubelet's wording for a failed hook (kuberuntime's handlers.go)."""
    kind = handler_kind(handler)
    if kind == "exec":
        what = f"Exec lifecycle hook ({list(handler['exec'].get('command') or [])})"
    elif kind == "httpGet":
        what = f"HTTP lifecycle hook ({handler['httpGet'].get('path') or '/'})"
    else:
        what = f"{hook} hook"
    return f"{what} for Container \"{container}\" in Pod \"{pod_ref}\" failed - error: {error}"


def remaining_grace(grace: float, hook_seconds: float) -> float:
    """What is left of the grace period for SIGTERM after a preStop hook took `hook_seconds`."""
    return max(grace - hook_seconds, MINIMUM_GRACE)


async def run_handler(handler: dict, target: ProbeTarget, timeout: float) -> ProbeResult:
    """Run one hook handler, giving up after `timeout` seconds."""
    kind = handler_kind(handler)
    if kind == "exec":
        result = await exec_command(handler["exec"], target, timeout)
        if not result.success and result.message:
            return ProbeResult(False, f"command {list(handler['exec'].get('command') or [])!r} failed, "
                                      f"message: {result.message!r}")
        return result
    if kind == "httpGet":
        return await http_get(handler["httpGet"], target, timeout)
    if kind == "tcpSocket":
        return await tcp_socket(handler["tcpSocket"], target, timeout)
    if kind == "sleep":
        await asyncio.sleep(max(0.0, min(float(handler["sleep"].get("seconds") or 0), timeout)))
        return ProbeResult(True)
    return ProbeResult(False, "a lifecycle handler needs exec, httpGet, tcpSocket or sleep")


async def timed(handler: dict, target: ProbeTarget, timeout: float) -> tuple[ProbeResult, float]:
    """run_handler and how long it took (a timeout is a failure)."""
    started = time.monotonic()
    if handler_kind(handler) == "sleep":  # cut at the deadline by itself, which is no failure
        return await run_handler(handler, target, timeout), time.monotonic() - started
    try:
        async with asyncio.timeout(timeout):
            result = await run_handler(handler, target, timeout)
    except TimeoutError:
        result = ProbeResult(False, f"hook timed out after {timeout:g}s")
    return result, time.monotonic() - started
