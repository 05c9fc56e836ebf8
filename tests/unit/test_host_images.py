"""Test images of real programs built from the host's packages: what goes into them."""

from __future__ import annotations

import gzip
import io
import json
import os
import tarfile

from pocketkube.testing import host_images, images
from pocketkube.testing.requires import BUSYBOX, NGINX, requires


def _layer_names(img: images.BuiltImage) -> set[str]:
    index = json.loads((img.layout / "index.json").read_text())
    blobs = img.layout / "blobs" / "sha256"
    manifest = json.loads((blobs / index["manifests"][0]["digest"].removeprefix("sha256:")).read_text())
    layer = (blobs / manifest["layers"][0]["digest"].removeprefix("sha256:")).read_bytes()
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(layer))) as t:
        return set(t.getnames())


def test_shared_libraries_lists_the_loader_and_libc():
    libs = host_images.shared_libraries(host_images.PYTHON)
    assert any("ld-linux" in lib for lib in libs)
    assert any("/libc.so" in lib for lib in libs)
    assert all(lib.startswith("/") for lib in libs)


@requires(os.access(host_images.NGINX, os.X_OK), NGINX)
@requires(images.have_busybox(), BUSYBOX)
def test_nginx_image_holds_nginx_its_libraries_and_config(tmp_path):
    img = host_images.nginx_image(cache=tmp_path)
    names = _layer_names(img)
    assert {"usr/sbin/nginx", "etc/nginx/nginx.conf", "usr/share/nginx/html/index.html", "bin/sh"} <= names
    for lib in host_images.shared_libraries(host_images.NGINX):
        assert os.path.realpath(lib).lstrip("/") in names
    assert host_images.nginx_image(cache=tmp_path) == img  # cached, and deterministic
