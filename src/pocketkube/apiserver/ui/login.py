"""One-time login links and the session cookie they become (spec §4).

EventSource cannot send an Authorization header, so a browser needs a cookie. `pocketkube ui`
(which can read the data dir, so it is the admin) signs a short-lived login token with the
server's key; the server checks it once and answers an HttpOnly, SameSite=Strict session cookie,
also signed with that key. The cookie is stateless, so it survives an API server restart; the
login token's nonce is remembered in memory until it expires, so a link works once.

    login token: v1.<expiry>.<nonce>.<HMAC(key, "login|expiry|nonce|user")>
    session:     v1.<expiry>.<b64 user>.<b64 groups>.<HMAC(key, "session|expiry|user|groups")>

(user and groups are base64url in the cookie: a cookie value may hold no comma.)
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time
from pathlib import Path

KEY_FILE = "ui-login.key"
KEY_BYTES = 32
LOGIN_TTL = 60
SESSION_TTL = 12 * 3600
COOKIE = "pocketkube-ui"
ADMIN_USER = "kubernetes-admin"  # the identity of the admin token (pki.identities)
EXPIRED_MESSAGE = "login link expired or already used: run `pocketkube ui` for a new one"


class LoginError(ValueError):
    """A login token that is malformed, forged, expired or used."""


def key_path(data_dir: Path) -> Path:
    return Path(data_dir) / "pki" / KEY_FILE


def ensure_key(data_dir: Path) -> bytes:
    """The server's key, created (32 random bytes, 0600) on first start."""
    path = key_path(data_dir)
    if path.exists() and len(path.read_bytes()) == KEY_BYTES:
        return path.read_bytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(secrets.token_bytes(KEY_BYTES))
    os.replace(tmp, path)
    return path.read_bytes()


def read_key(data_dir: Path) -> bytes:
    """The key for `pocketkube ui`; FileNotFoundError before the server has ever started."""
    key = key_path(data_dir).read_bytes()
    if len(key) != KEY_BYTES:
        raise ValueError(f"{key_path(data_dir)} is not a {KEY_BYTES}-byte key")
    return key


def _mac(key: bytes, *parts: str) -> str:
    digest = hmac.new(key, "|".join(parts).encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _b64(s: str) -> str:
    return base64.urlsafe_b64encode(s.encode()).rstrip(b"=").decode()


def _unb64(s: str) -> str:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4)).decode()


def make_login_token(key: bytes, user: str = ADMIN_USER, now: float | None = None, nonce: str | None = None) -> str:
    expiry = int((time.time() if now is None else now) + LOGIN_TTL)
    nonce = nonce or secrets.token_urlsafe(16)
    return f"v1.{expiry}.{nonce}.{_mac(key, 'login', str(expiry), nonce, user)}"


class UsedNonces:
    """Nonces of login tokens already exchanged, kept until their token would have expired anyway."""

    def __init__(self) -> None:
        self._expiry: dict[str, int] = {}

    def use(self, nonce: str, expiry: int, now: float) -> bool:
        """Record `nonce`; False if it was used before."""
        for n in [n for n, e in self._expiry.items() if e < now]:
            del self._expiry[n]
        if nonce in self._expiry:
            return False
        self._expiry[nonce] = expiry
        return True

    def __len__(self) -> int:
        return len(self._expiry)


def check_login_token(key: bytes, token: str, used: UsedNonces, user: str = ADMIN_USER,
                      now: float | None = None) -> None:
    """Accept `token` once; LoginError if it is malformed, forged, expired or was used before."""
    now = time.time() if now is None else now
    parts = token.split(".")
    if len(parts) != 4 or parts[0] != "v1" or not parts[1].isdigit() or not parts[2]:
        raise LoginError("malformed login token")
    expiry, nonce, mac = int(parts[1]), parts[2], parts[3]
    if not hmac.compare_digest(mac, _mac(key, "login", parts[1], nonce, user)):
        raise LoginError("login token signature does not match")
    if expiry < now or expiry > now + LOGIN_TTL + 5:  # +5: clock steps between signer and server
        raise LoginError("login token expired")
    if not used.use(nonce, expiry, now):
        raise LoginError("login token already used")


def make_session(key: bytes, user: str, groups: list[str] | tuple[str, ...], now: float | None = None) -> str:
    expiry = str(int((time.time() if now is None else now) + SESSION_TTL))
    u, g = _b64(user), _b64(",".join(groups))
    return f"v1.{expiry}.{u}.{g}.{_mac(key, 'session', expiry, u, g)}"


def check_session(key: bytes, cookie: str, now: float | None = None) -> tuple[str, list[str]] | None:
    """(user, groups) of a valid, unexpired session cookie, else None."""
    parts = cookie.split(".")
    if len(parts) != 5 or parts[0] != "v1" or not parts[1].isdigit():
        return None
    expiry, u, g, mac = parts[1:]
    if not hmac.compare_digest(mac, _mac(key, "session", expiry, u, g)):
        return None
    if int(expiry) < (time.time() if now is None else now):
        return None
    try:
        user, groups = _unb64(u), _unb64(g)
    except (ValueError, UnicodeDecodeError):
        return None
    return user, [x for x in groups.split(",") if x]


def login_link(server_url: str, key: bytes, user: str = ADMIN_USER) -> str:
    return f"{server_url.rstrip('/')}/ui/login?token={make_login_token(key, user)}"


def cookie_header(value: str, secure: bool = True) -> str:
    attrs = f"{COOKIE}={value}; HttpOnly; SameSite=Strict; Path=/ui; Max-Age={SESSION_TTL}"
    return attrs + ("; Secure" if secure else "")
