"""Fashion-MNIST as the Debian package dataset-fashion-mnist ships it (IDX files, gzip)."""

import gzip
import os
from typing import Tuple

import numpy as np

DATA_DIR = os.environ.get("FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist")
CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
           "Bag", "Ankle boot"]


def _read_idx(path: str) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    zero, dtype_code, dims = data[0] << 8 | data[1], data[2], data[3]
    if zero != 0 or dtype_code != 0x08:
        raise ValueError(f"{path}: not an IDX file of unsigned bytes")
    shape = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(dims)]
    offset = 4 + 4 * dims
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(shape)


def load(split: str) -> Tuple[np.ndarray, np.ndarray]:
    """(images N x 28 x 28 uint8, labels N int64) for split "train" or "test"."""
    prefix = {"train": "train", "test": "t10k"}[split]
    images = _read_idx(os.path.join(DATA_DIR, f"{prefix}-images-idx3-ubyte.gz"))
    labels = _read_idx(os.path.join(DATA_DIR, f"{prefix}-labels-idx1-ubyte.gz"))
    return images, labels.astype(np.int64)
