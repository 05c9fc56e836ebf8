"""Login links and session cookies (spec §4): a token works once, within its TTL, with the right
key only; a cookie carries its user, expires, and cannot be forged or altered."""

from __future__ import annotations

import os
import stat

import pytest

from pocketkube.apiserver.ui import login

KEY = b"k" * 32
NOW = 1_800_000_000.0


def test_key_file_is_created_private_and_kept(tmp_path):
    key = login.ensure_key(tmp_path)
    path = login.key_path(tmp_path)
    assert len(key) == 32 and stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert login.ensure_key(tmp_path) == key == login.read_key(tmp_path)


def test_read_key_before_the_server_started(tmp_path):
    with pytest.raises(FileNotFoundError):
        login.read_key(tmp_path)


def test_token_works_once():
    used = login.UsedNonces()
    token = login.make_login_token(KEY, now=NOW)
    login.check_login_token(KEY, token, used, now=NOW + 1)
    with pytest.raises(login.LoginError, match="already used"):
        login.check_login_token(KEY, token, used, now=NOW + 2)


def test_expired_token():
    token = login.make_login_token(KEY, now=NOW)
    with pytest.raises(login.LoginError, match="expired"):
        login.check_login_token(KEY, token, login.UsedNonces(), now=NOW + login.LOGIN_TTL + 1)


def test_token_from_the_far_future_is_refused():
    token = login.make_login_token(KEY, now=NOW + 3600)
    with pytest.raises(login.LoginError, match="expired"):
        login.check_login_token(KEY, token, login.UsedNonces(), now=NOW)


@pytest.mark.parametrize("mutate", [
    lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"),       # signature changed
    lambda t: t.replace("v1.", "v1.1", 1),                            # expiry changed
    lambda t: ".".join(t.split(".")[:2] + ["other"] + t.split(".")[3:]),  # nonce changed
])
def test_forged_token(mutate):
    token = mutate(login.make_login_token(KEY, now=NOW))
    with pytest.raises(login.LoginError):
        login.check_login_token(KEY, token, login.UsedNonces(), now=NOW)


def test_wrong_key_or_user():
    token = login.make_login_token(b"x" * 32, now=NOW)
    with pytest.raises(login.LoginError, match="signature"):
        login.check_login_token(KEY, token, login.UsedNonces(), now=NOW)
    token = login.make_login_token(KEY, user="mallory", now=NOW)
    with pytest.raises(login.LoginError, match="signature"):
        login.check_login_token(KEY, token, login.UsedNonces(), now=NOW)


@pytest.mark.parametrize("token", ["", "v1", "v2.1.a.b", "v1.x.a.b", "v1.1..b", "a.b.c.d.e"])
def test_malformed_token(token):
    with pytest.raises(login.LoginError):
        login.check_login_token(KEY, token, login.UsedNonces(), now=NOW)


def test_used_nonces_are_forgotten_after_expiry():
    used = login.UsedNonces()
    assert used.use("a", int(NOW + 60), NOW)
    assert used.use("b", int(NOW + 200), NOW + 100) and len(used) == 1


def test_session_round_trip_and_expiry():
    cookie = login.make_session(KEY, "kubernetes-admin", ["system:masters", "system:authenticated"], now=NOW)
    assert login.check_session(KEY, cookie, now=NOW + 10) == ("kubernetes-admin",
                                                              ["system:masters", "system:authenticated"])
    assert login.check_session(KEY, cookie, now=NOW + login.SESSION_TTL + 1) is None
    assert login.check_session(b"y" * 32, cookie, now=NOW) is None
    assert all(c not in cookie for c in ",; \"\\")


def test_session_cannot_be_altered():
    cookie = login.make_session(KEY, "alice", ["devs"], now=NOW)
    parts = cookie.split(".")
    parts[3] = login._b64("system:masters")
    assert login.check_session(KEY, ".".join(parts), now=NOW) is None
    assert login.check_session(KEY, "garbage", now=NOW) is None


def test_link_and_cookie_header():
    link = login.login_link("https://127.0.0.1:6443/", KEY)
    assert link.startswith("https://127.0.0.1:6443/ui/login?token=v1.")
    h = login.cookie_header("v")
    assert h.startswith("pocketkube-ui=v;") and "HttpOnly" in h and "SameSite=Strict" in h and "Path=/ui" in h
    assert h.endswith("; Secure")
