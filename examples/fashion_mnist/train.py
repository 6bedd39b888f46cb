"""Trains FashionNet on the Fashion-MNIST training set (dataset-fashion-mnist).

    /usr/bin/python3 examples/fashion_mnist/train.py OUT.pth [--epochs N]

Fixed seeds and one thread per core: the same run gives the same weights. Shows a progress bar
when stderr is a terminal; prints one line per epoch otherwise.
"""

import argparse
import math
import os
import sys
import time

import numpy as np
import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import data  # noqa: E402
from model import PIXEL_MEAN, PIXEL_STD, FashionNet  # noqa: E402


class Progress:
    """A one-line progress bar on a terminal; silent elsewhere."""

    def __init__(self, total: int, label: str):
        self.total, self.label, self.start = total, label, time.time()
        self.enabled = sys.stderr.isatty()

    def update(self, done: int, note: str = "") -> None:
        if not self.enabled:
            return
        width = 30
        filled = int(width * done / self.total)
        elapsed = time.time() - self.start
        sys.stderr.write(f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] "
                         f"{done}/{self.total} {elapsed:5.1f}s {note}   ")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\r" + " " * 100 + "\r")
            sys.stderr.flush()


def normalized(images: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(images.copy()).float().div_(255).unsqueeze(1)
    # channels_last: oneDNN's training convolutions run ~1.6x faster on this tiny network.
    return ((x - PIXEL_MEAN) / PIXEL_STD).contiguous(memory_format=torch.channels_last)


def evaluate(net: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    net.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(images), 1000):
            logits = net(images[start:start + 1000])
            correct += int((logits.argmax(1) == labels[start:start + 1000]).sum())
    return correct / len(images)


def train(epochs: int, batch_size: int = 128, seed: int = 0) -> FashionNet:
    torch.manual_seed(seed)
    np.random.seed(seed)
    train_images, train_labels = data.load("train")
    test_images, test_labels = data.load("test")
    x, y = normalized(train_images), torch.from_numpy(train_labels)
    x_test, y_test = normalized(test_images), torch.from_numpy(test_labels)

    net = FashionNet().to(memory_format=torch.channels_last)
    steps_per_epoch = math.ceil(len(x) / batch_size)
    optimizer = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=3e-3,
                                                   total_steps=epochs * steps_per_epoch)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.05)
    generator = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        net.train()
        order = torch.randperm(len(x), generator=generator)
        progress = Progress(steps_per_epoch, f"epoch {epoch + 1}/{epochs}")
        started, total_loss = time.time(), 0.0
        for step in range(steps_per_epoch):
            index = order[step * batch_size:(step + 1) * batch_size]
            batch = x[index]
            flip = torch.rand(len(batch), generator=generator) < 0.5  # mirror half the batch
            batch = torch.where(flip.view(-1, 1, 1, 1), batch.flip(3), batch)
            loss = loss_fn(net(batch), y[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total_loss += loss.item()
            if step % 20 == 0:
                progress.update(step + 1, f"loss {total_loss / (step + 1):.3f}")
        progress.close()
        accuracy = evaluate(net, x_test, y_test)
        print(f"epoch {epoch + 1}/{epochs}: loss {total_loss / steps_per_epoch:.4f}, "
              f"test accuracy {accuracy:.2%}, {time.time() - started:.0f}s", flush=True)
    return net.to(memory_format=torch.contiguous_format).eval()


def main() -> None:
    parser = argparse.ArgumentParser(description="Train FashionNet on Fashion-MNIST.")
    parser.add_argument("out")
    parser.add_argument("--epochs", type=int, default=12)
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 2)
    net = train(args.epochs)
    torch.save(net.state_dict(), args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
