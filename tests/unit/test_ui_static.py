"""The page's static files fit the strict CSP and ship whole: no inline script or style, no
HTML-string sinks, no style attributes, nothing loaded from another origin, every import present."""

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

STATIC = Path(__file__).resolve().parents[2] / "src" / "pocketkube" / "apiserver" / "ui" / "static"
SCRIPTS = sorted(STATIC.glob("*.js"))
SINKS = re.compile(r"\b(innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\s*\(|new\s+Function)\b")
IMPORT = re.compile(r"""^\s*import\b[^;]*?from\s+["']([^"']+)["']|import\(\s*["']([^"']+)["']\s*\)""", re.M)


def test_index_has_no_inline_script_or_style():
    html = (STATIC / "index.html").read_text()
    assert '<script type="module" src="static/app.js"></script>' in html
    assert '<link rel="stylesheet" href="static/app.css">' in html
    assert len(re.findall(r"<script\b", html)) == 1
    assert not re.search(r"<style\b|\sstyle=|\son[a-z]+=", html, re.I)
    assert not re.search(r"""(src|href)=["'](https?:)?//""", html), "nothing from another origin"


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_scripts_use_no_html_sinks_or_style_attributes(script):
    code = re.sub(r"^\s*//.*$", "", script.read_text(), flags=re.M)   # comments may name the sinks
    assert not SINKS.search(code), f"{script.name}: an HTML-string sink breaks the CSP's trusted types"
    assert not re.search(r"""setAttribute\(\s*["']style["']""", code)
    # Text shown to the user (`curl http://${ip}:${port}`) is not a load: templated URLs are skipped.
    urls = [u for u in re.findall(r"https?://[^\s\"'`]+", code) if u != "http://www.w3.org/2000/svg" and "${" not in u]
    assert not urls, f"{script.name} reaches outside the page's origin: {urls}"


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_every_import_is_a_shipped_module(script):
    for static, dynamic in IMPORT.findall(script.read_text()):
        target = static or dynamic
        assert target.startswith("./"), f"{script.name}: bare or absolute import {target!r} (no bundler, no CDN)"
        assert (STATIC / target[2:]).is_file(), f"{script.name} imports missing {target}"


def test_css_loads_nothing_from_elsewhere():
    css = (STATIC / "app.css").read_text()
    assert "@import" not in css and not re.search(r"url\(\s*['\"]?(https?:)?//", css)
    assert "prefers-color-scheme: dark" in css and ":focus-visible" in css
