import shutil
import tempfile
from pathlib import Path

import pytest

from pocketkube.testing.procs import Kubectl, ServerProcess, kubectl_binaries


@pytest.fixture
def tmp_data(tmp_path) -> Path:
    d = tmp_path / "data"
    d.mkdir()
    return d


@pytest.fixture(scope="module")
def server():
    """One API server per test module (a real subprocess on a free port)."""
    root = Path(tempfile.mkdtemp(prefix="pk-srv-"))
    s = ServerProcess(root / "data")
    s.data_dir.mkdir()
    s.start()
    yield s
    s.stop()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(params=sorted(kubectl_binaries()))
def kubectl(request, server, tmp_path):
    k = Kubectl(kubectl_binaries()[request.param], server.kubeconfig, cwd=tmp_path)
    k.version = request.param
    yield k
    k.close()
