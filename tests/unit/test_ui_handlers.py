"""The /ui static files: JavaScript as text/javascript, index.html never cached, nothing outside
the static directory (.., dotfiles, symlinks out), and a clear 404 when the page is not installed."""

from __future__ import annotations

import pytest

from pocketkube.api import errors
from pocketkube.apiserver.ui.handlers import UIServer, static_dir, static_file


@pytest.fixture
def ui(registry, tmp_path):
    static = tmp_path / "static"
    (static / "js").mkdir(parents=True)
    (static / "index.html").write_text("<!doctype html><title>map</title>")
    (static / "js" / "app.js").write_text("export const x = 1;")
    (static / "style.css").write_text("body{}")
    (static / ".hidden").write_text("secret")
    (tmp_path / "outside.txt").write_text("secret")
    (static / "link.txt").symlink_to(tmp_path / "outside.txt")
    return UIServer(registry, data_dir=tmp_path / "data", server_url=lambda: "https://127.0.0.1:6443",
                    node_token=lambda n: "t", admin=("kubernetes-admin", ["system:masters"]), static=static)


def test_content_types_and_caching(ui):
    r = ui._file("js/app.js")
    assert r.content_type == "text/javascript" and r.body == b"export const x = 1;"
    assert ui._file("style.css").content_type == "text/css"
    index = ui._file("index.html", cache="no-cache")
    assert index.content_type == "text/html" and index.headers["Cache-Control"] == "no-cache"


@pytest.mark.parametrize("rel", ["../outside.txt", "js/../../outside.txt", "%2e%2e/outside.txt", ".hidden",
                                 "link.txt", "js", "", "js//app.js", "nope.js", "js\\app.js", "a\x00b"])
def test_nothing_outside_the_static_dir(ui, rel):
    with pytest.raises(errors.NotFound):
        ui._file(rel)


def test_missing_page(ui):
    (ui.static / "index.html").unlink()
    with pytest.raises(errors.NotFound, match="page is not installed"):
        ui._file("index.html")


def test_package_static_dir_exists():
    assert static_dir().is_dir()
    assert static_file(static_dir(), "../handlers.py") is None
