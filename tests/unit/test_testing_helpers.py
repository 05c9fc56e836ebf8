"""The test suite's own helpers: prerequisites that skip locally and fail in CI, and waits."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from types import SimpleNamespace

import pytest

from pocketkube.testing import requires as req
from pocketkube.testing.waits import wait_for, wait_for_async

THING = "thing (apt-get install thing)"


@pytest.fixture
def local(monkeypatch):
    monkeypatch.delenv("CI", raising=False)


@pytest.fixture
def ci(monkeypatch):
    monkeypatch.setenv("CI", "true")


def test_an_available_prerequisite_does_nothing(ci):
    req.require(True, THING)


def test_a_missing_prerequisite_skips_locally(local):
    with pytest.raises(pytest.skip.Exception, match=r"missing prerequisite: thing \(apt-get install thing\)"):
        req.require(False, THING)


def test_a_missing_prerequisite_fails_in_ci(ci):
    with pytest.raises(pytest.fail.Exception, match="missing prerequisite: thing .*CI=true"):
        req.require(False, THING)


@pytest.mark.parametrize("value,expected", [("true", True), ("1", True), ("TRUE", True), ("", False),
                                            ("false", False)])
def test_ci_is_recognised_as_ci_systems_set_it(monkeypatch, value, expected):
    monkeypatch.setenv("CI", value)
    assert req.in_ci() is expected


def test_require_module_imports_or_skips(local):
    assert req.require_module("json").dumps(1) == "1"
    with pytest.raises(pytest.skip.Exception, match="no module 'no_such_module_xyz'"):
        req.require_module("no_such_module_xyz")


def test_skips_are_counted_by_prerequisite():
    def skip(reason: str) -> SimpleNamespace:
        return SimpleNamespace(longrepr=("f.py", 1, f"Skipped: {reason}"))
    reports = [skip(f"missing prerequisite: {THING}"), skip(f"missing prerequisite: {THING}"),
               skip(f"missing prerequisite: {req.NGINX}"), skip("not on this platform"),
               SimpleNamespace(longrepr=None)]
    assert req.skipped_prerequisites(reports) == {THING: 2, req.NGINX: 1}


def _run_pytest(tmp_path, ci: bool) -> subprocess.CompletedProcess:
    (tmp_path / "test_it.py").write_text(
        "from pocketkube.testing.requires import requires\n"
        "import pytest\n"
        "@pytest.fixture\n"
        "def expensive():\n"
        "    raise AssertionError('set up despite the missing prerequisite')\n"
        f"@requires(False, {THING!r})\n"
        "def test_needs_thing(expensive):\n"
        "    pass\n"
        "def test_needs_nothing():\n"
        "    pass\n")
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": ":".join(sys.path)} | ({"CI": "true"} if ci else {})
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p",
                           "pocketkube.testing.requires", "test_it.py"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)


def test_the_plugin_skips_before_fixtures_and_says_what_to_install(tmp_path):
    out = _run_pytest(tmp_path, ci=False).stdout
    assert "1 passed, 1 skipped" in out, out
    assert f"1 tests skipped for missing prerequisites: {THING}" in out, out


def test_the_plugin_fails_the_test_under_ci(tmp_path):
    run = _run_pytest(tmp_path, ci=True)
    assert run.returncode == 1 and "1 passed, 1 error" in run.stdout, run.stdout
    assert "CI (CI=true) must provide it" in run.stdout


def test_wait_for_returns_the_first_truthy_value_or_names_what_it_waited_for():
    values = iter([0, None, "done"])
    assert wait_for(lambda: next(values), timeout=5, interval=0) == "done"
    with pytest.raises(AssertionError, match="timed out waiting for the moon; last: False"):
        wait_for(lambda: False, timeout=0.05, interval=0.01, what="the moon")


async def test_wait_for_async_accepts_plain_and_async_predicates():
    flag = asyncio.Event()
    asyncio.get_running_loop().call_later(0.02, flag.set)
    assert await wait_for_async(flag.is_set, timeout=5, interval=0.005)

    async def check() -> int:
        return 7
    assert await wait_for_async(check, timeout=5) == 7
    with pytest.raises(AssertionError, match="timed out waiting for never"):
        await wait_for_async(lambda: 0, timeout=0.05, interval=0.01, what="never")

