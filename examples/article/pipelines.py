"""The founding article's two pipelines, as torchship exports them.

1. ImageClassifier: a uint8 HWC RGB image in, normalization inside, ResNet34 logits out; traced.
2. SegmentationPipeline: a scripted wrapper around a traced torchvision segmentation network;
   takes one HWC image, a list of HWC images or one BHWC tensor and returns
   (logits, labels, overlay).

Both keep their constants (mean, std, palette) as buffers, i.e. module state: one archive loads
on any device, unlike the article's classifier, whose trace froze the device of the tensors it
built inside forward.
"""

import os
from typing import List, Tuple, Union

import torch
from torch import Tensor, nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def imagenet_labels() -> List[str]:
    """ImageNet's 1000 class names in torchvision's order (its weights' "categories"), kept in a
    file so that classifiers export where torchvision does not import (PyPI's CPU torch 2.13)."""
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "imagenet_labels.txt")) as f:
        return f.read().splitlines()


def voc_labels() -> List[str]:
    import torchvision
    weights = torchvision.models.segmentation.LRASPP_MobileNet_V3_Large_Weights
    return list(weights.COCO_WITH_VOC_LABELS_V1.meta["categories"])


class ImageClassifier(nn.Module):
    """uint8 H x W x 3 RGB -> 1 x C logits."""

    def __init__(self, backbone: nn.Module, mean=IMAGENET_MEAN, std=IMAGENET_STD):
        super().__init__()
        self.backbone = backbone
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))

    def forward(self, image: Tensor) -> Tensor:
        x = image.permute(2, 0, 1).unsqueeze(0).float().div(255.0)
        return self.backbone((x - self.mean) / self.std)


class SegmentationNet(nn.Module):
    """Normalized B x 3 x H x W -> B x C x H x W logits; the part that gets traced."""

    def __init__(self, network: nn.Module):
        super().__init__()
        self.network = network

    def forward(self, x: Tensor) -> Tensor:
        return self.network(x)["out"]


def voc_palette(num_classes: int) -> Tensor:
    """The PASCAL VOC colour map: class index bits spread over the RGB bits."""
    palette = torch.zeros(num_classes, 3, dtype=torch.uint8)
    for index in range(num_classes):
        value, color = index, [0, 0, 0]
        for shift in range(7, -1, -1):
            for channel in range(3):
                color[channel] |= ((value >> channel) & 1) << shift
            value >>= 3
        palette[index] = torch.tensor(color, dtype=torch.uint8)
    return palette


class SegmentationPipeline(nn.Module):
    """Images -> (logits B x C x H x W, labels B x H x W, overlay B x H x W x 3 uint8)."""

    def __init__(self, net: nn.Module, num_classes: int, alpha: float = 0.5,
                 mean=IMAGENET_MEAN, std=IMAGENET_STD):
        super().__init__()
        self.net = net
        self.alpha = alpha
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))
        self.register_buffer("palette", voc_palette(num_classes))

    def forward(self, images: Union[List[Tensor], Tensor]) -> Tuple[Tensor, Tensor, Tensor]:
        if isinstance(images, Tensor):
            batch = images if images.dim() == 4 else images.unsqueeze(0)
        else:
            if len(images) == 0:
                raise ValueError("expected at least one image, got an empty list")
            size = images[0].shape
            for image in images:
                if image.shape != size:
                    raise ValueError("all images of a list must have the same size: got "
                                     + str(list(size)) + " and " + str(list(image.shape)))
            batch = torch.stack(images)
        if batch.dim() != 4 or batch.size(3) != 3:
            raise ValueError("expected images H x W x 3 (RGB), got shape " + str(list(batch.shape)))
        if batch.dtype != torch.uint8:
            raise ValueError("expected uint8 images (0-255), got another dtype")
        x = batch.permute(0, 3, 1, 2).float().div(255.0)
        logits = self.net((x - self.mean) / self.std)
        labels = logits.argmax(1)
        colors = self.palette[labels].float()
        blended = (batch.float() * (1.0 - self.alpha) + colors * self.alpha).round()
        foreground = (labels > 0).unsqueeze(-1)
        overlay = torch.where(foreground, blended, batch.float()).to(torch.uint8)
        return logits, labels, overlay


def resnet34_classifier(seed: int = 0) -> ImageClassifier:
    import torchvision
    torch.manual_seed(seed)
    return ImageClassifier(torchvision.models.resnet34(weights=None))


def lraspp_segmentation(seed: int = 0) -> SegmentationPipeline:
    import torchvision
    torch.manual_seed(seed)
    network = torchvision.models.segmentation.lraspp_mobilenet_v3_large(
        weights=None, weights_backbone=None, num_classes=21)
    return SegmentationPipeline(SegmentationNet(network), num_classes=21)
