"""The Fashion-MNIST test images that examples/fashion_mnist/build.py writes to build/models
(MODELS/fashion_mnist_test/00000.png ...), as the tensors the served archives take. The logits
Python computes for them need torch, which the harness never imports: tests/python/conftest.py
has them (fashion_reference)."""

import os

import numpy as np


def fashion_images(models: str, first: int, count: int) -> np.ndarray:
    """Fashion-MNIST test images first..first+count-1 as uint8 [count, 28, 28, 1]."""
    import cv2
    folder = os.path.join(models, "fashion_mnist_test")
    return np.stack([cv2.imread(os.path.join(folder, f"{i:05d}.png"), cv2.IMREAD_GRAYSCALE)
                     for i in range(first, first + count)])[..., None]
