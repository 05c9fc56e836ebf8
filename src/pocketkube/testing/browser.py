"""A real browser for the live map's tests: Debian's Chromium driven by Python Playwright.

Playwright's own browser download is never used (no registry for it here, and users' distros
ship Chromium): `launch()` starts `/usr/bin/chromium` headless with the flags that keep it off
the network (no background networking, component updates or sync: otherwise it keeps dialling
Google's hosts) and, as root, without its sandbox. Every page opened through `open_page()` records
console errors, page errors and CSP violations; `assert_clean(page)` fails the test on any.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator

CHROMIUM = os.environ.get("POCKETKUBE_CHROMIUM", "/usr/bin/chromium")
HINT = "Debian's chromium and Python playwright (apt-get install chromium; pip install -e '.[test]')"
CHROMIUM_ARGS = ("--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-default-apps",
                 "--no-default-browser-check", "--disable-features=Translate,MediaRouter")

# Collected in the page itself: a CSP violation is an event, not a console message.
_CSP_LISTENER = """
window.__pkCsp = [];
document.addEventListener('securitypolicyviolation', e => window.__pkCsp.push(
  e.violatedDirective + ' ' + (e.blockedURI || '') + ' ' + (e.sourceFile || '') + ':' + e.lineNumber));
"""


def available() -> bool:
    if not (os.path.exists(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        return False
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return False
    return True


@contextlib.contextmanager
def launch(**context_options) -> Iterator[object]:
    """A fresh browser context (its own profile dir, removed afterwards). Yields the context;
    `context_options` go to `new_context` (e.g. `ignore_https_errors=True`, `reduced_motion`)."""
    with launch_browser() as b, new_context(b, **context_options) as context:
        yield context


@contextlib.contextmanager
def launch_browser() -> Iterator[object]:
    """The browser itself, for tests that need several contexts at once (Playwright's sync API
    runs once per thread: `launch()` cannot nest). Contexts come from `new_context(browser)`."""
    from playwright.sync_api import sync_playwright

    args = list(CHROMIUM_ARGS)
    if os.geteuid() == 0:
        args.append("--no-sandbox")
    profile = tempfile.mkdtemp(prefix="pk-chromium-")
    try:
        with sync_playwright() as p:
            # Playwright gives each context its own profile; `profile` is chromium's home for
            # whatever it writes outside one (crash dumps, caches), removed with the test.
            b = p.chromium.launch(executable_path=CHROMIUM, args=args, headless=True,
                                  env={**os.environ, "HOME": profile, "XDG_CONFIG_HOME": profile,
                                       "XDG_CACHE_HOME": profile})
            try:
                yield b
            finally:
                b.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


@contextlib.contextmanager
def new_context(b, **context_options) -> Iterator[object]:
    """A context of browser `b` whose pages record CSP violations (see `problems`)."""
    context = b.new_context(**context_options)
    try:
        context.add_init_script(_CSP_LISTENER)
        yield context
    finally:
        context.close()


def open_page(context) -> object:
    """A new page that records console errors and uncaught exceptions in `page.pk_errors`."""
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(f"console.{m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
    page.pk_errors = errors  # type: ignore[attr-defined]
    return page


def problems(page) -> list[str]:
    """Console errors, page errors and CSP violations seen so far on `page`."""
    found = list(getattr(page, "pk_errors", []))
    with contextlib.suppress(Exception):  # the page may be closed or mid-navigation
        found += [f"CSP: {v}" for v in page.evaluate("window.__pkCsp || []")]
    return found


def assert_clean(page, allow: tuple[str, ...] = ()) -> None:
    bad = [p for p in problems(page) if not any(a in p for a in allow)]
    assert not bad, "the page reported problems:\n" + "\n".join(bad)
