"""`--advertise-address`: the API server listens there too, on the port `--port 0` picked, the
`kubernetes` endpoints carry that address and port, and the certificate covers it and the
`kubernetes` ClusterIP. (127.0.0.2 stands in for the cluster-bridge address of container mode.)"""

from __future__ import annotations

import asyncio
import socket
import ssl

from pocketkube.apiserver.app import ServerConfig
from pocketkube.server import api_server


def _get_version(host: str, port: int, cafile: str, server_hostname: str) -> str:
    ctx = ssl.create_default_context(cafile=cafile)
    with socket.create_connection((host, port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname=server_hostname) as tls:
            tls.sendall(b"GET /version HTTP/1.1\r\nHost: kubernetes\r\nConnection: close\r\n\r\n")
            return tls.recv(64).split(b"\r\n")[0].decode()


async def test_server_listens_and_advertises_on_the_advertise_address(tmp_path):
    server = api_server(ServerConfig(data_dir=tmp_path / "data", port=0, advertise_address="127.0.0.2"))
    await server.start()
    try:
        port = server.port
        assert port != 0
        ep = server.registry.store("", "endpoints").get("default", "kubernetes")
        assert ep["subsets"][0]["addresses"] == [{"ip": "127.0.0.2"}]
        assert ep["subsets"][0]["ports"][0]["port"] == port
        eps = server.registry.store("discovery.k8s.io", "endpointslices").get("default", "kubernetes")
        assert eps["endpoints"][0]["addresses"] == ["127.0.0.2"] and eps["ports"][0]["port"] == port
        cafile = str(server.pki.ca_cert)
        cluster_ip = server.registry.services.get("default", "kubernetes")["spec"]["clusterIP"]
        for host, name in (("127.0.0.1", "127.0.0.1"), ("127.0.0.2", "127.0.0.2"),
                           ("127.0.0.2", cluster_ip), ("127.0.0.2", "kubernetes.default.svc.cluster.local")):
            assert await asyncio.to_thread(_get_version, host, port, cafile, name) == "HTTP/1.1 200 OK", (host, name)
    finally:
        await server.stop()


async def test_without_an_advertise_address_the_endpoint_stays_loopback(tmp_path):
    server = api_server(ServerConfig(data_dir=tmp_path / "data", port=0))
    await server.start()
    try:
        ep = server.registry.store("", "endpoints").get("default", "kubernetes")
        assert ep["subsets"][0]["addresses"] == [{"ip": "127.0.0.1"}]
        assert ep["subsets"][0]["ports"][0]["port"] == server.port
    finally:
        await server.stop()
