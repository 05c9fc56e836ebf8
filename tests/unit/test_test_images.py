"""OCI layouts from pocketkube.testing.images: the manifest matches its blobs, builds are
deterministic, the layer holds what a runtime needs (modes, root ownership), bad input is named,
and the cache rebuilds a corrupt entry."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path

import pytest

from pocketkube.testing import images
from pocketkube.testing.images import (
    BUSYBOX_HINT,
    Content,
    Directory,
    ImageBuildError,
    LayoutError,
    Symlink,
    build_image,
    sha256_digest,
    verify_layout,
)
from pocketkube.testing.requires import requires

FAKE_BUSYBOX = b"\x7fELF not really busybox"


def _files(tmp_path: Path) -> dict:
    binary = tmp_path / "busybox"
    binary.write_bytes(FAKE_BUSYBOX)
    binary.chmod(0o700)
    return {"/bin/busybox": binary, "/bin/sh": Symlink("/bin/busybox"), "/etc/motd": b"hi\n",
            "/tmp": Directory(0o1777), "/etc/secret": Content(b"s", 0o600)}


def _build(tmp_path: Path, out: str = "layout", **overrides) -> Path:
    kwargs = {"name": "t", "tag": "v1", "files": _files(tmp_path), "entrypoint": ["/bin/sh", "-c"],
              "cmd": ["echo hi"], "env": ["PATH=/bin", "A=b"], "workdir": "/tmp",
              "out_dir": tmp_path / out} | overrides
    return build_image(**kwargs)


def _blob(layout: Path, digest: str) -> bytes:
    return (layout / "blobs" / "sha256" / digest.removeprefix("sha256:")).read_bytes()


def _manifest(layout: Path) -> tuple[dict, dict]:
    index = json.loads((layout / "index.json").read_text())
    [desc] = index["manifests"]
    return desc, json.loads(_blob(layout, desc["digest"]))


def test_manifest_describes_its_blobs(tmp_path):
    layout = _build(tmp_path)
    assert json.loads((layout / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    desc, manifest = _manifest(layout)
    assert desc["annotations"] == {"org.opencontainers.image.ref.name": "v1"}
    assert desc["mediaType"] == manifest["mediaType"] == images.MEDIA_MANIFEST
    referenced = [desc, manifest["config"], *manifest["layers"]]
    for d in referenced:
        data = _blob(layout, d["digest"])
        assert sha256_digest(data) == d["digest"] and len(data) == d["size"]
    # No stray blobs: exactly the manifest, the config and the layer.
    assert sorted(p.name for p in (layout / "blobs" / "sha256").iterdir()) == \
        sorted(d["digest"].removeprefix("sha256:") for d in referenced)
    config = json.loads(_blob(layout, manifest["config"]["digest"]))
    layer = _blob(layout, manifest["layers"][0]["digest"])
    assert config["rootfs"] == {"type": "layers", "diff_ids": [sha256_digest(gzip.decompress(layer))]}
    assert config["os"] == "linux"
    assert config["config"] == {"Entrypoint": ["/bin/sh", "-c"], "Cmd": ["echo hi"],
                                "Env": ["PATH=/bin", "A=b"], "WorkingDir": "/tmp"}
    assert verify_layout(layout).manifest_digest == desc["digest"]


def test_same_inputs_same_digest(tmp_path):
    first, second = _build(tmp_path, "a"), _build(tmp_path, "b")
    assert _manifest(first)[0]["digest"] == _manifest(second)[0]["digest"]
    assert (first / "index.json").read_bytes() == (second / "index.json").read_bytes()
    changed = _build(tmp_path, "c", cmd=["echo bye"])
    assert _manifest(changed)[0]["digest"] != _manifest(first)[0]["digest"]


def test_layer_members_modes_and_owners(tmp_path):
    layout = _build(tmp_path)
    _, manifest = _manifest(layout)
    layer = _blob(layout, manifest["layers"][0]["digest"])
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(layer))) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert list(members) == sorted(members)  # sorted, parents before children
        assert set(members) == {"bin", "bin/busybox", "bin/sh", "etc", "etc/motd", "etc/secret", "tmp"}
        assert all(m.uid == 0 and m.gid == 0 and m.mtime == images.MTIME for m in members.values())
        sh, busybox = members["bin/sh"], members["bin/busybox"]
        assert sh.issym() and sh.linkname == "/bin/busybox"
        assert busybox.isfile() and busybox.mode == 0o755
        assert tar.extractfile(busybox).read() == FAKE_BUSYBOX
        assert members["bin"].isdir() and members["bin"].mode == 0o755
        assert members["tmp"].mode == 0o1777
        assert members["etc/motd"].mode == 0o644 and members["etc/secret"].mode == 0o600


@pytest.mark.parametrize(("files", "message"), [
    ({"/bin/x": "/no/such/file"}, "host file '/no/such/file' does not exist"),
    ({"/bin/x": 42}, "expected a host path, bytes"),
    ({"": b"x"}, "non-empty absolute path"),
    ({"/../etc/x": b"x"}, "must not contain '..'"),
    ({"/bin": b"x", "/bin/sh": b"y"}, "'/bin' is a file but '/bin/sh' is under it"),
    ({"/a": b"x", "a": b"y"}, "given twice"),
    ({"/a": Content(b"x", 0o10000)}, "not a file mode"),
])
def test_bad_files_entry_is_named(tmp_path, files, message):
    with pytest.raises(ImageBuildError, match="image 't'.*" + message.replace("(", r"\(")):
        build_image(name="t", files=files, out_dir=tmp_path / "out")


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"cmd": "sh"}, "cmd must be a list of strings"),
    ({"env": ["PATH"]}, "NAME=value"),
    ({"tag": "a:b"}, "plain tag"),
    ({"workdir": "tmp"}, "workdir 'tmp' must be an absolute path"),
])
def test_bad_config_is_named(tmp_path, kwargs, message):
    with pytest.raises(ImageBuildError, match=message):
        build_image(name="t", files={"/x": b"x"}, out_dir=tmp_path / "out", **kwargs)


def test_out_dir_must_be_empty(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "junk").write_text("x")
    with pytest.raises(ImageBuildError, match="must be absent or an empty directory"):
        build_image(name="t", files={"/x": b"x"}, out_dir=tmp_path / "out")


def test_verify_layout_rejects_a_corrupt_blob(tmp_path):
    layout = _build(tmp_path)
    _, manifest = _manifest(layout)
    blob = layout / "blobs" / "sha256" / manifest["layers"][0]["digest"].removeprefix("sha256:")
    blob.write_bytes(blob.read_bytes()[:-1])
    with pytest.raises(LayoutError, match="does not match"):
        verify_layout(layout)
    with pytest.raises(LayoutError, match="not a valid"):
        verify_layout(tmp_path / "nothing")


def test_cache_reuses_and_rebuilds_corrupt_entries(tmp_path):
    cache = tmp_path / "cache"
    calls = []

    def build() -> dict:
        calls.append(1)
        return {"tag": "latest", "files": {"/x": b"x"}}
    first = images.cached_image(name="t", key_inputs={"v": 1}, build=build, cache=cache)
    index = first.layout / "index.json"
    mtime = index.stat().st_mtime_ns
    again = images.cached_image(name="t", key_inputs={"v": 1}, build=build, cache=cache)
    assert again == first and index.stat().st_mtime_ns == mtime  # reused, not rewritten
    assert len(calls) == 1
    config = first.layout / "blobs" / "sha256" / first.config_digest.removeprefix("sha256:")
    config.write_bytes(b"{}")
    rebuilt = images.cached_image(name="t", key_inputs={"v": 1}, build=build, cache=cache)
    assert rebuilt == first and verify_layout(rebuilt.layout) == first
    other = images.cached_image(name="t", key_inputs={"v": 2}, build=build, cache=cache)
    assert other.layout != first.layout
    assert sorted(p.name for p in cache.iterdir()) == sorted([first.layout.name, other.layout.name])


@requires(images.have_busybox(), BUSYBOX_HINT)
def test_busybox_and_pause_recipes(tmp_path):
    busybox = images.busybox_image(cache=tmp_path)
    _, manifest = _manifest(busybox.layout)
    layer = _blob(busybox.layout, manifest["layers"][0]["digest"])
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(layer))) as tar:
        names = set(tar.getnames())
        sh = tar.getmember("bin/sh")
    assert {"sh", "sleep", "echo", "cat", "wget", "nc", "httpd"} <= {n.rpartition("/")[2] for n in names}
    assert sh.issym() and sh.linkname == "/bin/busybox" and sh.uid == 0
    config = json.loads(_blob(busybox.layout, busybox.config_digest))
    assert config["config"]["Cmd"] == ["sh"]
    pause = images.pause_image(cache=tmp_path)
    config = json.loads(_blob(pause.layout, pause.config_digest))
    assert config["config"]["Entrypoint"] == ["/bin/sh", "-c", images.PAUSE_SCRIPT]
    assert config["config"]["User"] == "65535:65535"
    assert images.busybox_image(cache=tmp_path) == busybox
