"""Regenerate the vendored CRI v1 stubs (src/pocketkube/agent/runtime/cri/v1/).

The stubs are committed, so installing pocketkube needs no protoc; this script reproduces them.

    python scripts/gen_cri.py                      # regenerate the stubs from the vendored api.proto
    python scripts/gen_cri.py --upstream api.proto # first re-vendor an upstream api.proto

`--upstream` takes cri-api's `pkg/apis/runtime/v1/api.proto` (e.g.
`git -C cri-api show v0.25.0:pkg/apis/runtime/v1/api.proto > api.proto`), strips its gogoproto
options (Go-only code generation hints: protoc cannot resolve their import and Python ignores them)
and writes it with a provenance header. Update UPSTREAM below when changing the version.

Pinned to cri-api v0.25.0 because containerd 1.6.20 (Debian bookworm) vendors exactly that
version; RPCs and fields added later would answer UNIMPLEMENTED or be ignored by it.

The output depends on the grpcio-tools version (its generated files check the grpcio and protobuf
versions at import time): regenerate with GRPCIO_TOOLS below and keep pyproject's grpcio/protobuf
lower bounds in step with it.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

UPSTREAM = "kubernetes/cri-api v0.25.0 (commit ad0a88625fcaf5a4400ffcb483a88f0771d5a95c)"
GRPCIO_TOOLS = "1.85.1"

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"
PROTO = Path("pocketkube/agent/runtime/cri/v1/api.proto")  # relative to SRC: sets the import path

_GOGO_IMPORT = re.compile(r'^\s*import\s+"github\.com/gogo/protobuf/gogoproto/gogo\.proto";\s*\n', re.M)
_GOGO_FILE_OPTION = re.compile(r"^\s*option\s+\(gogoproto\.[A-Za-z_]+\)\s*=\s*[^;]*;\s*\n", re.M)
_GOGO_FIELD_OPTION = re.compile(r"\(gogoproto\.[A-Za-z_]+\)\s*=\s*(?:\"[^\"]*\"|[A-Za-z0-9_.]+)")
_EMPTY_OPTIONS = re.compile(r"\s*\[\s*(?:,\s*)*\]")


def strip_gogo(text: str) -> str:
    """`text` (a .proto) without gogoproto's import, file options and field options."""
    text = _GOGO_IMPORT.sub("", text)
    text = _GOGO_FILE_OPTION.sub("", text)
    text = _GOGO_FIELD_OPTION.sub("", text)
    # A field option list may now hold only commas, or stray ones next to kept options.
    text = re.sub(r"\[\s*,\s*", "[", text)
    text = re.sub(r",\s*(?=,|\])", "", text)
    text = _EMPTY_OPTIONS.sub("", text)
    if "gogoproto" in text:
        raise SystemExit("a gogoproto annotation is left that this script does not know how to strip")
    return text


def vendor(upstream: Path) -> None:
    header = (f"// Vendored from {UPSTREAM}, pkg/apis/runtime/v1/api.proto,\n"
              "// with its gogoproto options stripped by scripts/gen_cri.py. Do not edit: regenerate.\n")
    (SRC / PROTO).write_text(header + strip_gogo(upstream.read_text()))


def generate() -> None:
    out = str(SRC)
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{out}", f"--python_out={out}",
                    f"--grpc_python_out={out}", f"--pyi_out={out}", str(PROTO)], cwd=SRC, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upstream", type=Path, help="an upstream cri-api api.proto to vendor first")
    args = parser.parse_args()
    from importlib.metadata import version
    if (have := version("grpcio-tools")) != GRPCIO_TOOLS:
        raise SystemExit(f"grpcio-tools {have} is installed; these stubs are made with {GRPCIO_TOOLS}: "
                         f"pip install grpcio-tools=={GRPCIO_TOOLS}")
    if args.upstream:
        vendor(args.upstream)
    generate()


if __name__ == "__main__":
    main()
