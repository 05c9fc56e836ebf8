"""`pocketkube doctor`'s flags, apart from the probes so that building the CLI parser stays cheap."""

from __future__ import annotations

import argparse


def _port(value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port (0-65535), got {value!r}")
    return port


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", choices=("text", "json"), default="text",
                   help="text (a checklist) or json (for tools) (default: %(default)s)")
    p.add_argument("--bind-address", default="127.0.0.1", help="the API server address up would use")
    p.add_argument("--port", type=_port, default=6443, help="the API port up would use (default: %(default)s)")
    p.add_argument("--ingress-http-port", type=_port, default=80,
                   help="the Ingress HTTP port up would use (default: %(default)s; 0: none)")
    p.add_argument("--ingress-https-port", type=_port, default=443,
                   help="the Ingress HTTPS port up would use (default: %(default)s; 0: none)")
