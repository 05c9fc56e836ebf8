"""CriClient's error mapping: gRPC failures become CriError / NotFound / Unavailable with the
runtime's message kept verbatim. A fake runtime (grpc.aio server on a unix socket of the test's
own) answers, so this runs without containerd."""

from __future__ import annotations

import grpc
import grpc.aio
import pytest

from pocketkube.agent.runtime.cri.client import CriClient, CriError, NotFound, Unavailable, error_from_status
from pocketkube.agent.runtime.cri.v1 import api_pb2 as api
from pocketkube.agent.runtime.cri.v1 import api_pb2_grpc


@pytest.mark.parametrize("code, kind", [
    (grpc.StatusCode.NOT_FOUND, NotFound),
    (grpc.StatusCode.UNAVAILABLE, Unavailable),
    (grpc.StatusCode.DEADLINE_EXCEEDED, Unavailable),
    (grpc.StatusCode.UNKNOWN, CriError),
    (grpc.StatusCode.UNIMPLEMENTED, CriError),
])
def test_error_from_status(code, kind) -> None:
    err = error_from_status(code, 'failed to resolve image "x:1": not found', "CreateContainer")
    assert type(err) is kind and isinstance(err, CriError)
    assert err.code == code.name and err.method == "CreateContainer"
    assert err.message == 'failed to resolve image "x:1": not found'
    assert str(err) == f'CreateContainer: {code.name}: failed to resolve image "x:1": not found'


class _FakeRuntime(api_pb2_grpc.RuntimeServiceServicer):
    async def Version(self, request, context):
        return api.VersionResponse(version=request.version, runtime_name="fake", runtime_api_version="v1")

    async def ContainerStatus(self, request, context):
        await context.abort(grpc.StatusCode.NOT_FOUND,
                            f'an error occurred when try to find container "{request.container_id}": not found')

    async def StartContainer(self, request, context):
        await context.abort(grpc.StatusCode.UNKNOWN, "OCI runtime create failed: exec: \"nope\"")


@pytest.fixture
async def fake_endpoint(tmp_path):
    server = grpc.aio.server()
    api_pb2_grpc.add_RuntimeServiceServicer_to_server(_FakeRuntime(), server)
    sock = tmp_path / "fake.sock"
    server.add_insecure_port(f"unix://{sock}")
    await server.start()
    yield f"unix://{sock}"
    await server.stop(None)


async def test_calls_and_their_errors_through_a_fake_runtime(fake_endpoint) -> None:
    async with CriClient(fake_endpoint, timeout=5) as cri:
        version = await cri.version()
        assert (version.runtime_name, version.runtime_api_version, version.version) == ("fake", "v1", "0.1.0")
        with pytest.raises(NotFound, match='find container "abc": not found'):
            await cri.container_status("abc")
        with pytest.raises(CriError) as raised:
            await cri.start_container("abc")
        assert type(raised.value) is CriError and raised.value.message == 'OCI runtime create failed: exec: "nope"'
        with pytest.raises(CriError) as raised:  # an RPC the fake does not implement
            await cri.list_containers()
        assert raised.value.code == "UNIMPLEMENTED"


async def test_no_runtime_is_unavailable(tmp_path) -> None:
    async with CriClient(f"unix://{tmp_path}/absent.sock", timeout=2) as cri:
        with pytest.raises(Unavailable) as raised:
            await cri.version()
    assert raised.value.method == "Version"


def test_endpoint_must_be_a_unix_socket() -> None:
    with pytest.raises(ValueError, match="unix:///"):
        CriClient("localhost:1234")


def test_a_containerd_still_recovering_its_state_is_unavailable_not_a_failure():
    """After a restart containerd's CRI answers UNKNOWN until it has loaded its containers again:
    callers retry rather than treat it as broken (and never tear its pods down)."""
    err = error_from_status(grpc.StatusCode.UNKNOWN, "server is not initialized yet", "Version")
    assert isinstance(err, Unavailable) and err.code == "UNKNOWN"
    assert not isinstance(error_from_status(grpc.StatusCode.UNKNOWN, "boom", "Version"), Unavailable)
