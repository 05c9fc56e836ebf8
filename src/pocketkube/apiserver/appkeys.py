"""Typed keys of the API server's application state (aiohttp's web.AppKey, so a misspelt or
mistyped key is caught, and aiohttp warns about no string keys)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from pocketkube.registry.registry import Registry

REGISTRY = web.AppKey("registry", Registry)
# relay(request, pod, container, node) -> the node's log stream; absent when nodes are unreachable
LOG_RELAY = web.AppKey("log_relay", Callable[..., Any])
# node_token(node) -> the bearer token a node agent accepts from the API server (streams relay)
NODE_TOKEN = web.AppKey("node_token", Callable[[str], str])
# the generic verb handlers (apiserver.handlers.Handlers)
HANDLERS = web.AppKey("handlers", Any)
# the service-account token issuer (apiserver.satoken.signer.Signer) and authenticator
TOKEN_SIGNER = web.AppKey("token_signer", Any)
SA_AUTHENTICATOR = web.AppKey("sa_authenticator", Any)
# token -> (user, groups) of the static and bootstrap tokens, or None (TokenReviews cover them too)
STATIC_TOKENS = web.AppKey("static_tokens", Callable[[str], Any])
