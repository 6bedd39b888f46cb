"""The Fashion-MNIST network and the pipeline torchship exports around it."""

import torch
from torch import Tensor, nn

# Mean and standard deviation of the training images' pixels in [0, 1].
PIXEL_MEAN = 0.2860
PIXEL_STD = 0.3530


class FashionNet(nn.Module):
    """1 x 28 x 28 normalized images -> 10 logits."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(inplace=True),
            nn.MaxPool2d(2),  # 14 x 14
            nn.Conv2d(16, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(inplace=True),
            nn.MaxPool2d(2),  # 7 x 7
            nn.Conv2d(32, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Dropout(0.25), nn.Linear(64 * 7 * 7, 128), nn.ReLU(inplace=True),
            nn.Dropout(0.25), nn.Linear(128, 10))

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


class FashionPipeline(nn.Module):
    """What the archive computes: uint8 grayscale images B x 28 x 28 x 1 (as C++ decodes and
    resizes them) -> B x 10 logits. Normalization lives inside, as buffers."""

    def __init__(self, net: FashionNet):
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(PIXEL_MEAN))
        self.register_buffer("std", torch.tensor(PIXEL_STD))

    def forward(self, images: Tensor) -> Tensor:
        x = images.permute(0, 3, 1, 2).float().div(255.0)
        return self.net((x - self.mean) / self.std)
