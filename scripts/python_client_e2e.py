"""Run the official Python client's own end-to-end suite (kubernetes-client/python's
`kubernetes/e2e_test`) against a fresh pocketkube cluster, unchanged.

The suite is not shipped on PyPI (neither wheel nor sdist) and is not ours to copy, so it comes
from a checkout of the client's repository:

    python scripts/python_client_e2e.py --client-src ~/src/kubernetes-client-python [-- PYTEST-ARGS]

The suite imports itself as `kubernetes.e2e_test`, so it runs from a scratch copy of the
installed `kubernetes` package with the suite added; it reads the cluster from
~/.kube/config, so HOME points at a scratch dir holding our kubeconfig. The cluster is a
process-runtime `pocketkube up` on its own ports and ranges (the tests only need the API and
pods that run).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import kubernetes

from pocketkube.testing.procs import running_cluster


def scratch_package(client_src: Path, into: Path) -> Path:
    """A copy of the installed `kubernetes` package with the suite of `client_src` inside."""
    suite = client_src / "kubernetes" / "e2e_test"
    if not (suite / "base.py").is_file():
        raise SystemExit(f"{suite} is not the client's e2e suite: give --client-src a checkout of "
                         "https://github.com/kubernetes-client/python")
    package = into / "kubernetes"
    shutil.copytree(Path(kubernetes.__file__).parent, package)
    shutil.copytree(suite, package / "e2e_test")
    return package


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--client-src", type=Path, required=True, help="a checkout of kubernetes-client/python")
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pk-pyclient-e2e-") as tmp:
        root = Path(tmp)
        scratch_package(args.client_src, root / "pkg")
        home = root / "home"
        (home / ".kube").mkdir(parents=True)
        with running_cluster("pk-pyclient-e2e-") as cluster:
            shutil.copy(cluster.kubeconfig, home / ".kube" / "config")
            cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "ignore",
                   "--timeout", "120", "kubernetes/e2e_test", *args.pytest_args]
            return subprocess.run(cmd, cwd=root / "pkg", env={"HOME": str(home), "PATH": "/usr/bin:/bin"}).returncode


if __name__ == "__main__":
    sys.exit(main())
