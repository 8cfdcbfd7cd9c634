"""Regenerate the Python code for ``protos/diffsem/v1/*.proto`` with grpc_tools.protoc.

    python protos/generate.py            # writes next to the .proto files
    python protos/generate.py --out DIR  # writes DIR/protos/diffsem/v1/... (used by the regeneration test)

The include root is the repository root, so generated modules import each other as
``from protos.diffsem.v1 import common_pb2`` and never clash with the core package ``diffsem``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "protos" / "diffsem" / "v1"


def proto_files() -> list[Path]:
    return sorted(PROTO_DIR.glob("*.proto"))


def generate(out: Path = ROOT) -> list[Path]:
    """Run protoc for every .proto file into ``out``; return the generated files."""
    from grpc_tools import protoc

    target = out / "protos" / "diffsem" / "v1"
    target.mkdir(parents=True, exist_ok=True)
    well_known = Path(protoc.__file__).parent / "_proto"
    args = ["grpc_tools.protoc", f"-I{ROOT}", f"-I{well_known}", f"--python_out={out}",
            f"--grpc_python_out={out}", *(str(p.relative_to(ROOT)) for p in proto_files())]
    if protoc.main(args) != 0:
        raise RuntimeError("protoc failed; see the messages above")
    return sorted(p for p in target.iterdir() if p.name.endswith(("_pb2.py", "_pb2_grpc.py")))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=ROOT, help="output root (default: the repository)")
    files = generate(p.parse_args().out)
    print("\n".join(str(f) for f in files), file=sys.stderr)


if __name__ == "__main__":
    main()
