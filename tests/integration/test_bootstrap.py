"""The `kubernetes` Service and the system namespaces come back if they are deleted."""


from pocketkube.apiserver import app as app_module
from pocketkube.apiserver.app import ServerConfig
from pocketkube.server import api_server
from pocketkube.testing.waits import wait_for_async


async def test_deleted_kubernetes_service_is_recreated(tmp_path, monkeypatch):
    monkeypatch.setattr(app_module, "BOOTSTRAP_INTERVAL", 0.1)
    server = api_server(ServerConfig(data_dir=tmp_path / "data", port=0))
    await server.start()
    try:
        services = server.registry.services
        cluster_ip = services.get("default", "kubernetes")["spec"]["clusterIP"]
        await services.delete("default", "kubernetes")
        namespaces = server.registry.namespaces
        await namespaces.delete("", "kube-public")  # Terminating; then finalized as the controller would
        await namespaces.guaranteed_update("", "kube-public", _without_finalizers, subresource="finalize")

        def recreated() -> dict | None:
            svc = services.try_get("default", "kubernetes")
            return svc if server.registry.namespaces.try_get("", "kube-public") is not None else None
        svc = await wait_for_async(recreated, timeout=5, what="the kubernetes Service and kube-public back")
        assert svc["spec"]["clusterIP"] == cluster_ip
    finally:
        await server.stop()


def _without_finalizers(ns: dict) -> dict:
    ns["spec"]["finalizers"] = []
    return ns
