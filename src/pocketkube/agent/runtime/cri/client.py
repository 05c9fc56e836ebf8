"""An asyncio client for a CRI v1 runtime (containerd) over its unix socket.

Thin on purpose: each method is one RPC of cri-api's RuntimeService or ImageService, takes and
returns the generated protobuf messages (agent/runtime/cri/v1), and unwraps only the obvious
single field of a response (an id, a list). Building configs from pods and pod status from CRI
state belong to the kubelet, which will call this.

Every call has a deadline (`timeout`, larger for pulls; for StopContainer and ExecSync the
container's own timeout is added), so a wedged runtime fails a sync instead of hanging it. gRPC
errors become `CriError` (`NotFound`, `Unavailable` for the cases callers branch on) in one place,
`error_from_status`, and keep the runtime's message verbatim: it is what `kubectl describe`
will show (e.g. "failed to pull and unpack image ...").
"""

from __future__ import annotations

import os

# The agent spawns helpers (ctr, ip, nft) while channels are open; gRPC's fork handlers are for
# children that use gRPC, which ours never do, and otherwise log a line at every fork.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

import grpc  # noqa: E402 (after the setting above, which gRPC reads at import)
import grpc.aio  # noqa: E402

from pocketkube.agent.runtime.cri.v1 import api_pb2 as api
from pocketkube.agent.runtime.cri.v1.api_pb2_grpc import ImageServiceStub, RuntimeServiceStub

# What the kubelet sends in VersionRequest (the CRI client's version, not the runtime's).
KUBELET_CRI_VERSION = "0.1.0"
# Responses can be large (ListContainers on a busy node, verbose status JSON); the kubelet's limit.
_MAX_MESSAGE = 16 * 1024 * 1024
_RECONNECT_MS = (100, 1000)  # first and largest delay between connection attempts
_DEFAULT = object()  # `_call`'s "the client's timeout", as None means no deadline


class CriError(Exception):
    """A CRI call failed: `code` is the gRPC status name ("NOT_FOUND", "UNKNOWN", ...), `message`
    the runtime's own words, `method` the RPC."""

    def __init__(self, *, code: str, message: str, method: str) -> None:
        super().__init__(f"{method}: {code}: {message}")
        self.code = code
        self.message = message
        self.method = method


class NotFound(CriError):
    """The sandbox, container or image does not exist (or no longer does)."""


class Unavailable(CriError):
    """The runtime cannot be reached (not started, socket gone, restarting) or did not answer in
    time: retry later rather than treat the object as failed."""


_BY_CODE: dict[grpc.StatusCode, type[CriError]] = {
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: Unavailable,
}


def cri_initializing(message: str) -> bool:
    """Whether a CRI error says containerd is still recovering its state after a (re)start: its
    CRI plugin answers UNKNOWN "server is not initialized yet" until every sandbox and container
    is loaded again, which takes longer the more pods run."""
    return "server is not initialized yet" in message


def error_from_status(code: grpc.StatusCode, details: str | None, method: str) -> CriError:
    """The exception for a failed RPC `method` that ended with `code` and `details`."""
    if code == grpc.StatusCode.UNKNOWN and cri_initializing(details or ""):
        return Unavailable(code=code.name, message=details or "", method=method)  # retry later
    return _BY_CODE.get(code, CriError)(code=code.name, message=details or "", method=method)


class CriClient:
    """One gRPC channel to a CRI runtime at `endpoint` ("unix:///abs/path.sock"). Use as
    `async with CriClient(...) as cri:` or call `close()`; the channel connects lazily."""

    def __init__(self, endpoint: str, *, timeout: float = 10.0, pull_timeout: float = 600.0) -> None:
        if not endpoint.startswith("unix:///"):
            raise ValueError(f"CRI endpoint {endpoint!r} must be unix:///<absolute socket path>")
        self.endpoint = endpoint
        self.timeout = timeout
        self.pull_timeout = pull_timeout
        self._channel = grpc.aio.insecure_channel(endpoint, options=[
            ("grpc.max_receive_message_length", _MAX_MESSAGE),
            ("grpc.max_send_message_length", _MAX_MESSAGE),
            # After a runtime restart, reconnect within a second rather than gRPC's default back-off
            # (up to 120 s): the socket is local and the kubelet's syncs wait on it.
            ("grpc.initial_reconnect_backoff_ms", _RECONNECT_MS[0]),
            ("grpc.min_reconnect_backoff_ms", _RECONNECT_MS[0]),
            ("grpc.max_reconnect_backoff_ms", _RECONNECT_MS[1])])
        self._runtime = RuntimeServiceStub(self._channel)
        self._images = ImageServiceStub(self._channel)

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> CriClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _call(self, stub: object, method: str, request: object, timeout: float | None | object = _DEFAULT):
        """`stub.method(request)` with a deadline of `timeout` seconds (None: none; default: the
        client's); a failure raised as `CriError`."""
        try:
            return await getattr(stub, method)(request, timeout=self.timeout if timeout is _DEFAULT else timeout)
        except grpc.aio.AioRpcError as err:
            raise error_from_status(err.code(), err.details(), method) from None

    # -- runtime ---------------------------------------------------------------------------------

    async def version(self) -> api.VersionResponse:
        """runtime_name, runtime_version, runtime_api_version ("v1")."""
        return await self._call(self._runtime, "Version", api.VersionRequest(version=KUBELET_CRI_VERSION))

    async def status(self, *, verbose: bool = False) -> api.StatusResponse:
        """RuntimeReady / NetworkReady conditions."""
        return await self._call(self._runtime, "Status", api.StatusRequest(verbose=verbose))

    # -- images ----------------------------------------------------------------------------------

    async def image_status(self, ref: str) -> api.Image | None:
        """The image `ref` names, or None when it is not present."""
        resp = await self._call(self._images, "ImageStatus", api.ImageStatusRequest(image=api.ImageSpec(image=ref)))
        return resp.image if resp.HasField("image") else None

    async def pull_image(self, ref: str, auth: api.AuthConfig | None = None,
                         sandbox_config: api.PodSandboxConfig | None = None) -> str:
        """Pull `ref`; the image reference (digest) the runtime resolved it to."""
        req = api.PullImageRequest(image=api.ImageSpec(image=ref), auth=auth, sandbox_config=sandbox_config)
        return (await self._call(self._images, "PullImage", req, self.pull_timeout)).image_ref

    async def list_images(self, ref: str | None = None) -> list[api.Image]:
        req = api.ListImagesRequest(filter=api.ImageFilter(image=api.ImageSpec(image=ref)) if ref else None)
        return list((await self._call(self._images, "ListImages", req)).images)

    async def remove_image(self, ref: str) -> None:
        """Remove `ref`. containerd removes every tag and digest of that image ID; absent is OK."""
        await self._call(self._images, "RemoveImage", api.RemoveImageRequest(image=api.ImageSpec(image=ref)))

    async def image_fs_info(self) -> api.ImageFsInfoResponse:
        return await self._call(self._images, "ImageFsInfo", api.ImageFsInfoRequest())

    # -- sandboxes -------------------------------------------------------------------------------

    async def run_pod_sandbox(self, config: api.PodSandboxConfig, runtime_handler: str = "") -> str:
        """Create and start a sandbox; its id."""
        req = api.RunPodSandboxRequest(config=config, runtime_handler=runtime_handler)
        # Pulls the sandbox image when missing, so it gets the pull deadline.
        return (await self._call(self._runtime, "RunPodSandbox", req, self.pull_timeout)).pod_sandbox_id

    async def stop_pod_sandbox(self, sandbox_id: str) -> None:
        """Kill the sandbox's containers and tear its network down; idempotent."""
        await self._call(self._runtime, "StopPodSandbox", api.StopPodSandboxRequest(pod_sandbox_id=sandbox_id))

    async def remove_pod_sandbox(self, sandbox_id: str) -> None:
        """Remove the sandbox and its containers (force-stopping them); absent is OK."""
        await self._call(self._runtime, "RemovePodSandbox",
                         api.RemovePodSandboxRequest(pod_sandbox_id=sandbox_id))

    async def pod_sandbox_status(self, sandbox_id: str, *, verbose: bool = False) -> api.PodSandboxStatusResponse:
        """status (state, network.ip, ...) and, if `verbose`, info["info"] JSON (pid, netns)."""
        req = api.PodSandboxStatusRequest(pod_sandbox_id=sandbox_id, verbose=verbose)
        return await self._call(self._runtime, "PodSandboxStatus", req)

    async def list_pod_sandbox(self, filter: api.PodSandboxFilter | None = None) -> list[api.PodSandbox]:
        req = api.ListPodSandboxRequest(filter=filter)
        return list((await self._call(self._runtime, "ListPodSandbox", req)).items)

    # -- containers ------------------------------------------------------------------------------

    async def create_container(self, sandbox_id: str, config: api.ContainerConfig,
                               sandbox_config: api.PodSandboxConfig) -> str:
        """Create a container in the sandbox; its id."""
        req = api.CreateContainerRequest(pod_sandbox_id=sandbox_id, config=config, sandbox_config=sandbox_config)
        return (await self._call(self._runtime, "CreateContainer", req)).container_id

    async def start_container(self, container_id: str) -> None:
        await self._call(self._runtime, "StartContainer", api.StartContainerRequest(container_id=container_id))

    async def stop_container(self, container_id: str, timeout: int) -> None:
        """SIGTERM, then SIGKILL after `timeout` seconds (the grace period)."""
        req = api.StopContainerRequest(container_id=container_id, timeout=timeout)
        await self._call(self._runtime, "StopContainer", req, max(timeout, 0) + self.timeout)

    async def remove_container(self, container_id: str) -> None:
        await self._call(self._runtime, "RemoveContainer", api.RemoveContainerRequest(container_id=container_id))

    async def container_status(self, container_id: str, *, verbose: bool = False) -> api.ContainerStatusResponse:
        req = api.ContainerStatusRequest(container_id=container_id, verbose=verbose)
        return await self._call(self._runtime, "ContainerStatus", req)

    async def list_containers(self, filter: api.ContainerFilter | None = None) -> list[api.Container]:
        req = api.ListContainersRequest(filter=filter)
        return list((await self._call(self._runtime, "ListContainers", req)).containers)

    async def reopen_container_log(self, container_id: str) -> None:
        """Make the runtime open the container's log path anew (after the kubelet renamed the
        file, for rotation); containerd refuses unless the container runs."""
        await self._call(self._runtime, "ReopenContainerLog", api.ReopenContainerLogRequest(container_id=container_id))

    async def exec_sync(self, container_id: str, cmd: list[str], timeout: int) -> api.ExecSyncResponse:
        """Run `cmd` in the container: stdout, stderr, exit_code. `timeout` seconds (0: none) bounds
        the command; the call's deadline is that plus the usual one."""
        req = api.ExecSyncRequest(container_id=container_id, cmd=cmd, timeout=timeout)
        return await self._call(self._runtime, "ExecSync", req, timeout + self.timeout if timeout > 0 else None)

    async def exec(self, container_id: str, cmd: list[str], *, tty: bool, stdin: bool, stdout: bool,
                   stderr: bool) -> str:
        """Prepare a streaming exec; the URL of the runtime's streaming server to run it at."""
        req = api.ExecRequest(container_id=container_id, cmd=cmd, tty=tty, stdin=stdin, stdout=stdout, stderr=stderr)
        return (await self._call(self._runtime, "Exec", req)).url

    async def attach(self, container_id: str, *, tty: bool, stdin: bool, stdout: bool, stderr: bool) -> str:
        """Prepare an attach to the container's streams; the URL to stream it at."""
        req = api.AttachRequest(container_id=container_id, tty=tty, stdin=stdin, stdout=stdout, stderr=stderr)
        return (await self._call(self._runtime, "Attach", req)).url

    async def port_forward(self, sandbox_id: str, ports: list[int]) -> str:
        """Prepare a port-forward into the sandbox's network namespace; the URL to stream it at."""
        req = api.PortForwardRequest(pod_sandbox_id=sandbox_id, port=ports)
        return (await self._call(self._runtime, "PortForward", req)).url

    async def list_container_stats(self) -> list[api.ContainerStats]:
        return list((await self._call(self._runtime, "ListContainerStats", api.ListContainerStatsRequest())).stats)

    async def container_stats(self, container_id: str) -> api.ContainerStats:
        req = api.ContainerStatsRequest(container_id=container_id)
        return (await self._call(self._runtime, "ContainerStats", req)).stats
