"""A data dir written with pocketkube's first key layout (`/registry/<group|core>/<plural>/`)
opens under kube-apiserver's layout: objects, resourceVersions and watches intact."""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
from pathlib import Path

import pytest
from apiclient import SERVICES, Api, service

from pocketkube.api.resources import RESOURCES
from pocketkube.registry import codec
from pocketkube.testing.procs import ServerProcess

pytestmark = pytest.mark.timeout(90)


def _to_old_layout(db_path: Path) -> int:
    """Rewrite every key back to the first layout, as a data dir from before the change has it."""
    db = sqlite3.connect(db_path, isolation_level=None)
    try:
        db.execute("BEGIN IMMEDIATE")
        moved = 0
        for old, new in codec.legacy_renames(RESOURCES).items():
            moved += db.execute("UPDATE kv SET name = ? || substr(name, ?) WHERE substr(name, 1, ?) = ?",
                                (old, len(new) + 1, len(new), new)).rowcount
        db.execute("COMMIT")
        return moved
    finally:
        db.close()


def test_an_old_layout_data_dir_keeps_objects_and_resource_versions():
    root = Path(tempfile.mkdtemp(prefix="pk-paging-migrate-"))
    server = ServerProcess(root / "data")
    server.data_dir.mkdir()
    try:
        server.start(port=0)
        api = Api(server)
        kept = api.post(SERVICES, service("kept", type="NodePort")).json()
        changed = api.request("PATCH", f"{SERVICES}/kept", {"metadata": {"labels": {"v": "2"}}},
                              content_type="application/merge-patch+json").json()
        rv_before = int(api.get(SERVICES).json()["metadata"]["resourceVersion"])
        api.close()
        server.stop()

        assert _to_old_layout(server.data_dir / "state.db") > 50  # every object of the fresh cluster
        server.start(port=0)
        api = Api(server)
        assert api.get(f"{SERVICES}/kept").json() == changed
        nodes_port = changed["spec"]["ports"][0]["nodePort"]
        clash = api.post(SERVICES, service("clash", type="NodePort", ports=[{"port": 80, "nodePort": nodes_port}]))
        assert clash.status == 422  # the allocator was rebuilt from the moved Services
        events = [(e["type"], e["object"]["metadata"]["name"]) for e in api.watch(
            f"{SERVICES}?watch=1&timeoutSeconds=1&resourceVersion={kept['metadata']['resourceVersion']}")]
        assert ("MODIFIED", "kept") in events  # history moved with the keys
        after = api.post(SERVICES, service("after")).json()
        assert int(after["metadata"]["resourceVersion"]) > rv_before
        api.close()
        server.stop()
        db = sqlite3.connect(server.data_dir / "state.db")
        try:
            assert db.execute("SELECT COUNT(*) FROM kv WHERE name LIKE '/registry/core/%'").fetchone() == (0,)
            assert db.execute("SELECT COUNT(*) FROM kv WHERE name = '/registry/services/specs/default/kept'"
                              ).fetchone()[0] >= 2
        finally:
            db.close()
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
