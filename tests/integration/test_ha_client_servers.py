"""Client failover against a real API server: an agent whose first `--server` refuses registers
through the second and learns the servers from the `kubernetes` Endpoints (kept in its data dir,
so it starts again with only the dead URL given); a watch resumes through another address from
its last resourceVersion, without a relist, when the connection it used dies."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pocketkube.api.resources import BY_PLURAL
from pocketkube.client.informer import Informer
from pocketkube.client.rest import Client
from pocketkube.client.servers import load_servers
from pocketkube.nodeagent import SERVERS_FILE, Agent, AgentConfig
from pocketkube.testing.procs import ServerProcess
from pocketkube.testing.waits import wait_for_async

NODES = BY_PLURAL[("", "nodes")]
SERVICES = BY_PLURAL[("", "services")]


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    root = Path(tempfile.mkdtemp(prefix="pk-ha-srv-"))
    s = ServerProcess(root / "data", extra_args=["--no-control-plane", "--service-cidr", "127.218.0.0/16"])
    s.data_dir.mkdir()
    s.start()
    yield s
    s.stop(timeout=0.3)
    shutil.rmtree(root, ignore_errors=True)


def _refused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Forwarder:
    """A TCP relay on 127.0.0.1 to the API server: another address of the same server, which
    the test can make die (listener and every connection)."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.writers: set[asyncio.StreamWriter] = set()
        self.server: asyncio.AbstractServer | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        return f"https://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        self.writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, ConnectionError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def die(self) -> None:
        assert self.server is not None
        self.server.close()
        for w in self.writers:
            w.transport.abort()
        await self.server.wait_closed()


async def test_agent_fails_over_and_keeps_the_learned_servers(server):
    root = Path(tempfile.mkdtemp(prefix="pk-ha-agent-"))
    dead = f"https://127.0.0.1:{_refused_port()}"

    def config(servers: str) -> AgentConfig:
        return AgentConfig(server=servers, token=server.token(), ca_file=str(server.ca_file), node_name="ha-node-1",
                           node_ip="127.216.0.1", pod_cidr="127.217.1.0/24", data_dir=root, kubelet_port=0,
                           dataplane="userspace", kill_pods_on_exit=True)
    agent = Agent(config(f"{dead},{server.url}"))
    try:
        await agent.start()
        assert agent.client.server == server.url
        await agent.client.get(NODES, "", "ha-node-1")
        # The `kubernetes` Endpoints name this server (its bind address: 127.0.0.1 and its port).
        await wait_for_async(lambda: load_servers(root / SERVERS_FILE) == [server.url], timeout=10,
                             what="the learned server list in the data dir")
        await agent.shutdown(kill_pods=True)
        # Restarted with only the dead URL: the kept list gets it to the server.
        agent = Agent(config(dead))
        assert agent.servers.servers == [dead, server.url]
        await agent.start()
        assert agent.client.server == server.url
    finally:
        await agent.shutdown(kill_pods=True)
        shutil.rmtree(root, ignore_errors=True)


async def test_a_watch_resumes_on_the_next_server_from_its_last_resource_version(server):
    a, b = Forwarder(server.port), Forwarder(server.port)
    url_a, url_b = await a.start(), await b.start()
    client = Client(f"{url_a},{url_b}", server.token(), str(server.ca_file))
    admin = Client(server.url, server.token(), str(server.ca_file))
    lists = 0
    real_list = client.list

    async def counting_list(*args, **kwargs):
        nonlocal lists
        lists += 1
        return await real_list(*args, **kwargs)
    client.list = counting_list  # type: ignore[method-assign]
    informer = Informer(client, SERVICES, "default")
    task = asyncio.create_task(informer.run())
    try:
        await asyncio.wait_for(informer.synced.wait(), 10)
        assert client.server == url_a and lists == 1
        await a.die()
        svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "ha-after-failover"},
               "spec": {"ports": [{"port": 80}]}}
        await admin.create(SERVICES, svc, "default")
        await wait_for_async(lambda: informer.get("default/ha-after-failover"), timeout=10,
                             what="the Service created while the watch moved to the other server")
        assert client.server == url_b
        assert lists == 1  # resumed from its resourceVersion, not relisted
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await client.close()
        with contextlib.suppress(Exception):
            await admin.delete(SERVICES, "default", "ha-after-failover")
        await admin.close()
        await b.die()
