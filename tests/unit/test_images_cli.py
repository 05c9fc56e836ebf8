"""`pocketkube image load|ls`: the pure parts (archive sniffing, ctr output, the table, the load
report) and the errors that need no containerd (files, data dirs), through the CLI entry point."""

from __future__ import annotations

import gzip
import io
import random
import tarfile
from pathlib import Path

import pytest

from pocketkube import cli
from pocketkube.agent.runtime.containerd import ctr_message, imported_names
from pocketkube.images_cli import (
    ImageCommandError,
    ImageEntry,
    archive_kind,
    check_archive,
    find_nodes,
    format_table,
    human_size,
    image_rows,
    load_report,
    natural_key,
    split_ref,
)


def _tar(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_archive_kind() -> None:
    tar = _tar({"manifest.json": b"[]"})
    assert archive_kind(tar) == "tar"
    assert archive_kind(tar[:512]) == "tar"
    assert archive_kind(gzip.compress(tar)) == "gzip"
    assert archive_kind(random.Random(7).randbytes(1024)) is None
    assert archive_kind(b"") is None
    assert archive_kind(b"hello") is None
    assert archive_kind(bytes(1024)) is None  # an empty tar: nothing to load
    corrupt = bytearray(tar)
    corrupt[0] ^= 0xFF  # the name changes, the stored checksum no longer matches
    assert archive_kind(bytes(corrupt)) is None


def test_check_archive_errors(tmp_path: Path) -> None:
    with pytest.raises(ImageCommandError, match="no such file"):
        check_archive(tmp_path / "missing.tar")
    with pytest.raises(ImageCommandError, match="is a directory"):
        check_archive(tmp_path)
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"\x00\x01not a tar" * 100)
    with pytest.raises(ImageCommandError, match="not an image archive"):
        check_archive(junk)
    good = tmp_path / "good.tar"
    good.write_bytes(_tar({"index.json": b"{}"}))
    assert check_archive(good) == "tar"


def test_ctr_output_parsing() -> None:
    assert ctr_message("ctr: archive/tar: invalid tar header\n") == "archive/tar: invalid tar header"
    assert ctr_message("time=... level=warning msg=x\nctr: unrecognized image format\n") == \
        "unrecognized image format"
    assert ctr_message("") == "ctr failed without a message"
    digest = "sha256:" + "a" * 64
    out = f"unpacking docker.io/library/foo:1 ({digest})...done\nunpacking import-2026-01-01@{digest} ({digest})...done\n"
    assert imported_names(out) == ["docker.io/library/foo:1", f"import-2026-01-01@{digest}"]
    assert imported_names("") == []


def test_split_ref_size_and_order() -> None:
    assert split_ref("docker.io/library/nginx:1.25") == ("docker.io/library/nginx", "1.25")
    assert split_ref("127.0.0.1:5000/busybox") == ("127.0.0.1:5000/busybox", "<none>")
    assert split_ref("127.0.0.1:5000/busybox:1") == ("127.0.0.1:5000/busybox", "1")
    assert split_ref("docker.io/x/y@sha256:abc") == ("docker.io/x/y", "<none>")
    assert [human_size(n) for n in (0, 999, 1000, 2_130_731, 78_643_200, 10**12)] == \
        ["0B", "999B", "1kB", "2.13MB", "78.6MB", "1TB"]
    assert sorted(["node-10", "node-2", "node-1"], key=natural_key) == ["node-1", "node-2", "node-10"]


def test_image_rows_and_table() -> None:
    busybox = ImageEntry("sha256:" + "b" * 64, ("docker.io/library/busybox:1", "docker.io/x/bb:2"), (), 2_130_731)
    pause = ImageEntry("sha256:" + "p" * 64, ("docker.io/x/pause:1",), ("docker.io/x/pause@sha256:" + "d" * 64,), 999)
    untagged = ImageEntry("sha256:" + "u" * 64, (), ("docker.io/x/u@sha256:" + "e" * 64,), 1000)
    rows = image_rows({"node-2": [busybox], "node-10": [busybox], "node-1": [busybox, pause, untagged]},
                      ["node-1", "node-2", "node-10"])
    assert rows == [
        ("docker.io/library/busybox", "1", "b" * 13, "2.13MB", "node-1,node-2,node-10"),
        ("docker.io/x/bb", "2", "b" * 13, "2.13MB", "node-1,node-2,node-10"),
        ("docker.io/x/pause", "1", "p" * 13, "999B", "node-1"),
        ("docker.io/x/u", "<none>", "u" * 13, "1kB", "node-1"),
    ]
    assert format_table(("IMAGE", "TAG"), [("a", "1"), ("longer", "22")]) == \
        "IMAGE    TAG\na        1\nlonger   22\n"
    assert image_rows({}, []) == []


def test_load_report() -> None:
    a, b = Path("a.tar"), Path("b.tar")
    nodes = ["node-1", "node-2"]
    out, errors = load_report([a, b], nodes, {
        "node-1": {a: ["docker.io/library/x:1"], b: "unexpected EOF"},
        "node-2": {a: ["docker.io/library/x:1"], b: "unexpected EOF"}})
    assert out == ["Loaded image: docker.io/library/x:1 (all nodes)"]
    assert errors == ["b.tar: unexpected EOF"]
    out, errors = load_report([a], nodes, {"node-1": {a: ["import-2026-01-01:latest"]}, "node-2": {a: "boom"}})
    assert out[0] == "Loaded image: import-2026-01-01:latest (node-1)"
    assert "names no repository" in out[1]
    assert errors == ["a.tar: boom (on node-2)"]
    out, errors = load_report([a], nodes, {"node-1": {a: []}, "node-2": {a: []}})
    assert (out, errors) == ([], ["a.tar: no image in the archive"])


def test_find_nodes(tmp_path: Path) -> None:
    with pytest.raises(ImageCommandError, match="no pocketkube cluster at"):
        find_nodes(tmp_path)
    for n in ("node-1", "node-2", "node-10"):
        (tmp_path / "nodes" / n / "pods").mkdir(parents=True)
    with pytest.raises(ImageCommandError, match=r"process runtime.*--runtime containerd"):
        find_nodes(tmp_path)
    for n in ("node-1", "node-2", "node-10"):
        (tmp_path / "nodes" / n / "containerd").mkdir()
    nodes = find_nodes(tmp_path)
    assert [n.name for n in nodes] == ["node-1", "node-2", "node-10"]
    assert nodes[0].socket == tmp_path / "nodes" / "node-1" / "containerd" / "containerd.sock"


@pytest.mark.parametrize("argv, expected", [
    (["image", "ls", "--data-dir", "{tmp}"], "pocketkube: image ls: no pocketkube cluster at {tmp}"),
    (["image", "load", "--data-dir", "{tmp}", "{tmp}/missing.tar"],
     "pocketkube: image load: {tmp}/missing.tar: no such file"),
    (["image", "load", "--data-dir", "{tmp}", "{tmp}/junk.tar"], "pocketkube: image load: {tmp}/junk.tar: not an image"),
    (["image", "load", "--data-dir", "{tmp}", "{tmp}/good.tar"], "pocketkube: image load: no pocketkube cluster"),
    (["image", "load", "--data-dir", "{tmp}/proc", "{tmp}/good.tar"],
     "pocketkube: image load: the cluster at {tmp}/proc runs the process runtime"),
    (["image", "load", "--data-dir", "{tmp}/down", "{tmp}/good.tar"],
     "pocketkube: image load: containerd of node-1, node-2 are not running"),
])
def test_cli_errors_are_one_line(tmp_path: Path, capsys, monkeypatch, argv: list[str], expected: str) -> None:
    monkeypatch.setenv("POCKETKUBE_NO_UVLOOP", "1")
    (tmp_path / "junk.tar").write_bytes(b"junk" * 200)
    (tmp_path / "good.tar").write_bytes(_tar({"manifest.json": b"[]"}))
    (tmp_path / "proc" / "nodes" / "node-1").mkdir(parents=True)
    for n in ("node-1", "node-2"):
        (tmp_path / "down" / "nodes" / n / "containerd").mkdir(parents=True)
    (tmp_path / "down" / "nodes" / "node-1" / "containerd" / "containerd.sock").touch()  # stale
    code = cli.main([a.format(tmp=tmp_path) for a in argv])
    err = capsys.readouterr().err
    assert code == 1
    assert err.count("\n") == 1 and err.startswith(expected.format(tmp=tmp_path)), err


def test_gunzip_to_a_temp_tar(tmp_path: Path) -> None:
    from pocketkube.images_cli import _gunzip

    tar = _tar({"manifest.json": b"[]"})
    good = tmp_path / "a.tar.gz"
    good.write_bytes(gzip.compress(tar))
    out = _gunzip(good, tmp_path)
    assert out.parent == tmp_path and out.read_bytes() == tar
    out.unlink()
    truncated = tmp_path / "t.tar.gz"
    truncated.write_bytes(gzip.compress(tar)[:-20])
    not_tar = tmp_path / "n.gz"
    not_tar.write_bytes(gzip.compress(b"hello" * 200))
    with pytest.raises(ImageCommandError, match="corrupt gzip"):
        _gunzip(truncated, tmp_path)
    with pytest.raises(ImageCommandError, match="gzip, but not of a tar"):
        _gunzip(not_tar, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tar.gz", "n.gz", "t.tar.gz"]  # no temp left


def test_load_needs_files_or_from_host(tmp_path, capsys):
    assert cli.main(["image", "load", "--data-dir", str(tmp_path)]) == 1
    assert "give archives to load (FILE...) or --from-host NAME" in capsys.readouterr().err


def test_from_host_says_when_there_is_no_cluster_before_building(tmp_path, capsys):
    assert cli.main(["image", "load", "--data-dir", str(tmp_path / "none"), "--from-host", "nginx"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("pocketkube: image load:") and "Traceback" not in err
