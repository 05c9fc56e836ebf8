"""`pocketkube doctor`'s flags, apart from the probes so that building the CLI parser stays cheap."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", choices=("text", "json"), default="text",
                   help="text (a checklist) or json (for tools) (default: %(default)s)")
    p.add_argument("--bind-address", default="127.0.0.1", help="the API server address up would use")
    p.add_argument("--port", type=int, default=6443, help="the API port up would use (default: %(default)s)")
    p.add_argument("--ingress-http-port", type=int, default=80, help="(default: %(default)s; 0: none)")
    p.add_argument("--ingress-https-port", type=int, default=443, help="(default: %(default)s; 0: none)")
