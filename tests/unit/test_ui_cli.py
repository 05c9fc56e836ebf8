"""`pocketkube ui`: the login link from the data dir's key and kubeconfig, and clear errors."""

from __future__ import annotations

import yaml

from pocketkube.apiserver.ui import login
from pocketkube.cli import main


def test_prints_a_link_the_server_accepts(tmp_path, capsys):
    key = login.ensure_key(tmp_path)
    (tmp_path / "kubeconfig").write_text(yaml.safe_dump({"clusters": [{"cluster": {"server": "https://127.0.0.1:7443"}}]}))
    assert main(["ui", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    link = next(w for w in out.split() if "/ui/login?token=" in w)
    assert link.startswith("https://127.0.0.1:7443/ui/login?token=")
    login.check_login_token(key, link.split("token=", 1)[1], login.UsedNonces())
    assert "kubectl proxy" in out


def test_no_cluster(tmp_path, capsys):
    assert main(["ui", "--data-dir", str(tmp_path / "none")]) == 1
    assert "start one with `pocketkube up`" in capsys.readouterr().err
    (tmp_path / "kubeconfig").write_text("clusters: []\n")
    login.ensure_key(tmp_path)
    assert main(["ui", "--data-dir", str(tmp_path)]) == 1


def test_up_summary_prints_the_link_once_the_server_has_its_key(tmp_path):
    from pocketkube.cluster import Cluster, UpConfig

    c = Cluster(UpConfig(tmp_path, node_ip_base="127.211.0.0", update_user_kubeconfig=False))
    c.url = "https://127.0.0.1:7443"
    assert "/ui/login" not in c.summary()  # no key: nothing to sign with
    key = login.ensure_key(tmp_path)
    link = next(w for w in c.summary().split() if "/ui/login?token=" in w)
    assert link.startswith("https://127.0.0.1:7443/ui/login?token=")
    login.check_login_token(key, link.split("token=", 1)[1], login.UsedNonces())
