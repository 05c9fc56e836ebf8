"""`pocketkube ui`: print a one-time login link to the live map (and the `kubectl proxy` way).

Wiring: whoever can read the data dir is the cluster's admin, so the link is signed here with the
API server's key (`<data-dir>/pki/ui-login.key`) for the admin identity; the server URL comes
from the data dir's kubeconfig. The link works once, within 60 s (apiserver/ui/login.py).
"""

from __future__ import annotations

import sys
import webbrowser
from pathlib import Path

import yaml

from pocketkube.apiserver.ui import login


def server_url(data_dir: Path) -> str:
    cfg = yaml.safe_load((Path(data_dir) / "kubeconfig").read_text()) or {}
    return cfg["clusters"][0]["cluster"]["server"]


def link_lines(data_dir: Path, url: str | None = None) -> list[str]:
    """The lines `up` and `pocketkube ui` print: the login link and the kubectl proxy alternative."""
    url = url or server_url(data_dir)
    link = login.login_link(url, login.read_key(data_dir))
    return ["Live map in your browser (this link works once, within 60 s; `pocketkube ui` prints a new one):",
            f"  {link}",
            "or, with your kubeconfig's credentials: kubectl proxy, then open http://127.0.0.1:8001/ui/"]


def run(data_dir: Path, open_browser: bool = False) -> int:
    try:
        url = server_url(data_dir)
        lines = link_lines(data_dir, url)
    except FileNotFoundError as e:
        print(f"pocketkube: no cluster in {data_dir} ({e.filename} is missing): start one with `pocketkube up`",
              file=sys.stderr)
        return 1
    except (KeyError, IndexError, TypeError, ValueError, yaml.YAMLError) as e:
        print(f"pocketkube: cannot read the cluster in {data_dir}: {e}", file=sys.stderr)
        return 1
    print("\n".join(lines), flush=True)
    if open_browser:
        webbrowser.open(lines[1].strip())
    return 0
