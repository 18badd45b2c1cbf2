# Generated from training/w3d4_fashion.py by `python -m grader build`: edit that file, not this one.
"""FashionMNIST from its IDX files: an optional, larger dataset for part 3, for those with a network.

FashionMNIST (Zalando, 2017) is 70,000 greyscale 28x28 pictures of clothes in 10 classes, shipped
as four IDX files, gzipped. torchvision.datasets.FashionMNIST reads exactly these files; this module
reads them with torch alone, so that nothing beyond the course's packages is needed:

    download_fashion_mnist("data/fashion")                    # only when you ask: about 30 MB
    train_images, train_labels = load_fashion_mnist("data/fashion", "train")   # (60000, 1, 28, 28) in [-1, 1]

The IDX format: a 4-byte magic number (two zero bytes, a type code, 0x08 for unsigned bytes, and the
number of dimensions), one big-endian 4-byte size per dimension, then the values, row-major.
Images are 3-dimensional (magic 2051), labels 1-dimensional (magic 2049).
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path
from typing import Union

import torch as t
from einops import rearrange

IMAGES_MAGIC, LABELS_MAGIC = 2051, 2049  # 0x00000803: unsigned bytes in 3 dims; 0x00000801: in 1 dim
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
# Where the dataset's authors publish it (the same URLs that torchvision uses).
BASE_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


class IdxError(ValueError):
    """An IDX file that is missing, truncated, or not what its name says."""


def _find(folder: Path, stem: str) -> Path:
    """`stem.gz` or `stem` in `folder` (the gzipped file wins), or IdxError saying what is missing."""
    for candidate in (folder / f"{stem}.gz", folder / stem):
        if candidate.is_file():
            return candidate
    raise IdxError(
        f"{stem}(.gz) is not in {folder}: download the dataset with download_fashion_mnist({str(folder)!r}) "
        "or put the four IDX files there."
    )


def read_idx(path: Union[str, Path], expected_magic: int) -> t.Tensor:
    """The values of one IDX file of unsigned bytes, gzipped or not, as a uint8 tensor of its shape."""
    path = Path(path)
    if not path.is_file():
        raise IdxError(f"{path} does not exist")
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":  # gzip's own magic number: decompress whatever the file is called
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as error:
            raise IdxError(f"{path.name} is a damaged gzip file ({error}): download it again") from None
    if len(raw) < 4:
        raise IdxError(f"{path.name} is too short to be an IDX file ({len(raw)} bytes)")
    magic = struct.unpack(">I", raw[:4])[0]
    if magic != expected_magic:
        raise IdxError(
            f"{path.name} has magic number {magic}, expected {expected_magic} "
            f"({'images' if expected_magic == IMAGES_MAGIC else 'labels'} of unsigned bytes): wrong or corrupt file"
        )
    n_dims = magic & 0xFF
    header = 4 + 4 * n_dims
    if len(raw) < header:
        raise IdxError(f"{path.name} ends inside its header")
    shape = struct.unpack(f">{n_dims}I", raw[4:header])
    expected_bytes = header + int(t.tensor(shape).prod().item() if shape else 1)
    if len(raw) != expected_bytes:
        raise IdxError(f"{path.name} has {len(raw):,} bytes, but its header {tuple(shape)} implies "
                       f"{expected_bytes:,}: the file is truncated or corrupt, download it again")
    values = t.frombuffer(bytearray(raw[header:]), dtype=t.uint8)
    return values.reshape(shape)


def load_fashion_mnist(folder: Union[str, Path], split: str = "train") -> tuple[t.Tensor, t.Tensor]:
    """One split ("train": 60,000 or "test": 10,000) as (images, labels).

    images: (n, 1, 28, 28) float32 in [-1, 1]; labels: (n,) int64 class indices (see CLASSES)."""
    if split not in FILES:
        raise ValueError(f"split must be one of {sorted(FILES)}, not {split!r}")
    folder = Path(folder)
    images_stem, labels_stem = FILES[split]
    pixels = read_idx(_find(folder, images_stem), IMAGES_MAGIC)
    labels = read_idx(_find(folder, labels_stem), LABELS_MAGIC)
    if pixels.ndim != 3 or labels.ndim != 1 or len(pixels) != len(labels):
        raise IdxError(f"{images_stem} holds {tuple(pixels.shape)} and {labels_stem} {tuple(labels.shape)}: "
                       "they must be (n, height, width) and (n,)")
    images = rearrange(pixels.float() / 255 * 2 - 1, "n h w -> n 1 h w")
    return images, labels.long()


def download_fashion_mnist(folder: Union[str, Path], base_url: str = BASE_URL) -> list[Path]:
    """Download the four gzipped IDX files into `folder` (skipping those already there). Needs a
    network connection; nothing in the course calls this for you."""
    from urllib.request import urlretrieve

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for stem in (name for pair in FILES.values() for name in pair):
        target = folder / f"{stem}.gz"
        if not target.is_file():
            print(f"downloading {base_url}{stem}.gz")
            urlretrieve(f"{base_url}{stem}.gz", target)
        written.append(target)
    return written


def downscale(images: t.Tensor, size: int = 16) -> t.Tensor:
    """(n, 1, 28, 28) -> (n, 1, size, size) by area averaging: 16x16 trains in minutes on a CPU."""
    return t.nn.functional.interpolate(images, size=(size, size), mode="area")
