"""Fixtures every test may use, and the suite's rules.

Each test is marked `unit`, `integration` or `e2e` by the directory it lives in (so
`pytest -m unit` picks the fast ones), and a test whose prerequisite is missing skips locally but
fails under CI=true (pocketkube.testing.requires, loaded as a plugin by addopts in pyproject.toml).
"""

import shutil
import tempfile
from pathlib import Path

import pytest

from pocketkube.testing.procs import Kubectl, ServerProcess, kubectl_binaries
from pocketkube.testing.requires import KUBECTL, requires

# tests/<directory>/... -> the marker its tests get. conformance runs the data planes in-process
# against local backends, as integration tests do.
DIRECTORY_MARKERS = {"unit": "unit", "integration": "integration", "conformance": "integration",
                     "e2e": "e2e", "soak": "e2e"}
TESTS_ROOT = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        try:
            top = item.path.relative_to(TESTS_ROOT).parts[0]
        except ValueError:  # a test outside tests/ (run by path): no directory marker
            continue
        if top not in DIRECTORY_MARKERS:
            raise pytest.UsageError(f"{item.nodeid}: tests/{top} is not in DIRECTORY_MARKERS (tests/conftest.py)")
        item.add_marker(DIRECTORY_MARKERS[top])


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


# Every kubectl build here; with none, one parameter that the missing prerequisite skips (or fails
# in CI), where an empty parameter list would skip silently.
KUBECTL_PARAMS = sorted(kubectl_binaries()) or [pytest.param("none", marks=requires(False, KUBECTL))]


@pytest.fixture(params=KUBECTL_PARAMS)
def kubectl(request, server, tmp_path):
    k = Kubectl(kubectl_binaries()[request.param], server.kubeconfig, cwd=tmp_path)
    k.version = request.param
    yield k
    k.close()
