"""Vendored JavaScript is pinned: each file's sha256 must match its VERSIONS record."""

import hashlib
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
VENDOR_DIRS = sorted(
    [*ROOT.joinpath("tests/vendor").glob("*/"), *ROOT.joinpath("src/pocketkube/apiserver/ui/static/vendor").glob("*/")])


def _records(versions: Path) -> dict[str, str]:
    out = {}
    for line in versions.read_text().splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "sha256":
            out[parts[1]] = parts[2]
    return out


def test_there_is_vendored_code_to_check():
    assert any(d.name.startswith("axe-core-") for d in VENDOR_DIRS)


@pytest.mark.parametrize("vendor", VENDOR_DIRS, ids=lambda d: d.name)
def test_vendored_files_match_their_recorded_sha256(vendor):
    versions = vendor / "VERSIONS"
    assert versions.is_file(), f"{vendor} has no VERSIONS file"
    records = _records(versions)
    assert "LICENSE" in records, "a vendored package ships its LICENSE"
    files = {p.name for p in vendor.iterdir() if p.is_file() and p.name != "VERSIONS"}
    assert files == set(records), f"files without a record or records without a file in {vendor}"
    for name, digest in records.items():
        assert hashlib.sha256((vendor / name).read_bytes()).hexdigest() == digest, f"{vendor.name}/{name} changed"
    version = next(line.split(":", 1)[1].strip() for line in versions.read_text().splitlines()
                   if line.startswith("version:"))
    assert vendor.name.endswith("-" + version)
