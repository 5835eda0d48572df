"""Pack an image folder's files into one file, and unpack it: to carry CIFAR-10 to a GPU machine.

The offline CIFAR-10 copy is 60,000 small JPEG files (57 MB of bytes, far more on disk). A machine that
receives only a few dozen megabytes gets one file instead: every image's bytes concatenated, plus their
relative paths and offsets (gzipped: 60,000 paths are 2 MB of text, 0.2 MB compressed, and what a GPU
machine receives is capped at 64 MiB). Nothing is decoded or re-encoded, so the images arrive bit for bit.
A pack named ``*.xz`` is also xz-compressed: CIFAR-10's 57 MB become 18 MB, since every small JPEG repeats
the same few hundred bytes of header tables.

Usage::

    python scripts/pack_image_folder.py pack   $CNN_STUDY_DATA/cifar10-jpeg  data/cifar10-jpeg.pack.xz
    python scripts/pack_image_folder.py unpack data/cifar10-jpeg.pack.xz   data/cifar10-jpeg
"""

from __future__ import annotations

import argparse
import gzip
import json
import lzma
from pathlib import Path
from typing import IO

import numpy as np


def index_file(packed: Path) -> Path:
    """The gzipped JSON index (paths and offsets) that goes with ``packed`` (``x.pack`` or ``x.pack.xz``)."""
    return packed.parent / packed.name.removesuffix(".xz").replace(".pack", ".json.gz")


def _open(packed: Path, mode: str) -> IO[bytes]:
    """``packed`` opened for binary reading or writing, through xz if its name ends in ``.xz``."""
    return lzma.open(packed, mode) if packed.suffix == ".xz" else open(packed, mode)


def pack(folder: Path, packed: Path) -> None:
    """Write ``packed`` (the bytes) and its index (paths and offsets) for every file below ``folder``."""
    paths = sorted(path for path in folder.rglob("*") if path.is_file())
    contents = [path.read_bytes() for path in paths]
    offsets = np.cumsum([0] + [len(content) for content in contents]).tolist()
    packed.parent.mkdir(parents=True, exist_ok=True)
    with _open(packed, "wb") as file:
        file.write(b"".join(contents))
    index = {"paths": [str(path.relative_to(folder)) for path in paths], "offsets": offsets}
    with gzip.open(index_file(packed), "wt") as file:
        json.dump(index, file)
    print(f"packed {len(paths):,} files, {offsets[-1] / 2**20:.1f} MiB, into {packed}")


def unpack(packed: Path, folder: Path) -> None:
    """Recreate the files of a pack below ``folder``."""
    with _open(packed, "rb") as file:
        data = file.read()
    with gzip.open(index_file(packed), "rt") as file:
        index = json.load(file)
    if len(data) != index["offsets"][-1]:
        raise SystemExit(f"{packed} has {len(data)} bytes, its index expects {index['offsets'][-1]}: corrupt copy.")
    for relative, start, end in zip(index["paths"], index["offsets"], index["offsets"][1:]):
        target = folder / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data[start:end])
    print(f"unpacked {len(index['paths']):,} files into {folder}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("action", choices=("pack", "unpack"))
    parser.add_argument("source", type=Path)
    parser.add_argument("destination", type=Path)
    args = parser.parse_args()
    (pack if args.action == "pack" else unpack)(args.source, args.destination)


if __name__ == "__main__":
    main()
