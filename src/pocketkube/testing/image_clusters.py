"""Container-mode test clusters with the test images loaded: what the containerd e2e modules share.

A module names the images it runs (busybox, python, nginx: built from the host's packages, see
`images` and `host_images`) and passes its own address ranges; `module_kubectl` is the usual
module-scoped `k` fixture over the module's `cluster` fixture.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

from pocketkube.testing import host_images, images
from pocketkube.testing.archives import oci_archive
from pocketkube.testing.procs import ClusterProcess, Kubectl, preferred_kubectl, running_container_cluster

# name → (how to build its OCI layout, the reference it is loaded as)
TEST_IMAGES: dict[str, tuple[Callable[[], images.BuiltImage], str]] = {
    "busybox": (images.busybox_image, "docker.io/library/busybox:latest"),
    "python": (host_images.python_image, "docker.io/library/python:3"),
    "nginx": (host_images.nginx_image, "docker.io/library/nginx:latest"),
}


def image_archives(out: Path, names: Sequence[str]) -> dict[str, Path]:
    """OCI archives of the named test images, written under `out`, by name."""
    archives = {}
    for name in names:
        build, reference = TEST_IMAGES[name]
        archives[name] = oci_archive(build().layout, out / f"{name}.tar", name=reference)
    return archives


@contextmanager
def image_cluster(prefix: str, out: Path, names: Sequence[str], **kwargs) -> Iterator[ClusterProcess]:
    """`running_container_cluster` with the named test images loaded (kwargs: the module's
    ranges, nodes, extra_args...)."""
    with running_container_cluster(prefix, archives=list(image_archives(out, names).values()), **kwargs) as c:
        yield c


def _kubectl(cluster: ClusterProcess) -> Iterator[Kubectl]:
    kc = preferred_kubectl(cluster.kubeconfig)
    yield kc
    kc.close()


def module_kubectl() -> Callable:
    """`k = module_kubectl()` in a module: a module-scoped kubectl on its `cluster` fixture."""
    return pytest.fixture(scope="module", name="k")(_kubectl)
