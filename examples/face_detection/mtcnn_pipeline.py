"""MTCNN's face detector (facenet-pytorch's `MTCNN.detect`) as one exportable torch module.

facenet-pytorch runs its three networks from Python glue: an image pyramid built in a Python
loop, torchvision's NMS, NMS in numpy with a "Min" overlap, boxes converted to numpy to crop the
image one face at a time, and a Python list of crops. `FaceDetector` computes the same thing
with torch operations only, so that TorchScript and torch.export can take the whole pipeline:

- the pyramid is a list of scales computed from the image size (TorchScript: a loop at run
  time; torch.export with a fixed image size: unrolled at export);
- NMS is greedy NMS written as a fixed point over the overlap matrix (no torchvision operator,
  no numpy): `keep[j] = not any(keep[i] and overlap[i, j] > t for i before j)`, iterated from
  all-kept until it stops changing, which reaches greedy's answer in at most n rounds and
  usually in a handful;
- the crops of every candidate face are resized to 24 x 24 and 48 x 48 at once, as
  `rows @ image @ columns^T` with the averaging weights of `interpolate(mode="area")`, instead
  of one `interpolate` per face on a Python slice.

forward takes the article's input, a uint8 H x W x 3 RGB image, and returns
(boxes [N, 4] x1 y1 x2 y2 in the image's pixels, scores [N], landmarks [N, 5, 2] x y), faces
sorted largest first as `MTCNN.detect` sorts them (select_largest=True, its default).
"""

from typing import List, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor


def pyramid_scales(height: int, width: int, min_face_size: float, factor: float) -> List[float]:
    """The scales facenet-pytorch's detect_face runs PNet at: from 12 / min_face_size down by
    `factor` while the shorter side stays at least 12 pixels."""
    scale = 12.0 / min_face_size
    shorter = min(height, width) * scale
    scales: List[float] = []
    while shorter >= 12:
        scales.append(scale)
        scale = scale * factor
        shorter = shorter * factor
    return scales


def overlap_matrix(boxes: Tensor, use_min: bool, plus_one: bool) -> Tensor:
    """Pairwise overlap of x1 y1 x2 y2 boxes: intersection over union (torchvision's nms), or
    over the smaller area with inclusive pixel sizes (facenet-pytorch's numpy "Min" NMS)."""
    offset = 1.0 if plus_one else 0.0
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    area = (x2 - x1 + offset) * (y2 - y1 + offset)
    width = (torch.minimum(x2[:, None], x2[None, :]) - torch.maximum(x1[:, None], x1[None, :]) +
             offset).clamp(min=0.0)
    height = (torch.minimum(y2[:, None], y2[None, :]) - torch.maximum(y1[:, None], y1[None, :]) +
              offset).clamp(min=0.0)
    inter = width * height
    if use_min:
        return inter / torch.minimum(area[:, None], area[None, :])
    return inter / (area[:, None] + area[None, :] - inter)


def _greedy_fixed_point(suppresses: Tensor) -> Tensor:
    """keep[j] = no kept box before j suppresses j, iterated from all-kept. Position j is
    settled once every position before it is, so this ends after at most n rounds."""
    keep = torch.ones(suppresses.shape[0], dtype=torch.bool)
    changed = True
    while changed:
        settled = ~(suppresses & keep[:, None]).any(0)
        changed = bool((settled != keep).any())
        keep = settled
    return keep


@torch.jit.unused
def _compiling() -> bool:
    return torch.compiler.is_compiling()


@torch.jit.unused
def _greedy_fixed_point_exported(suppresses: Tensor) -> Tensor:
    # torch.export cannot trace a loop whose trip count depends on data: its while_loop can.
    from torch._higher_order_ops.while_loop import while_loop

    def not_settled(keep: Tensor, changed: Tensor) -> Tensor:
        return changed.clone()  # a while_loop's condition may not return its input itself

    def one_round(keep: Tensor, changed: Tensor) -> Tuple[Tensor, Tensor]:
        settled = ~(suppresses & keep[:, None]).any(0)
        return settled, (settled != keep).any()

    keep = torch.ones(suppresses.shape[0], dtype=torch.bool)
    keep, _ = while_loop(not_settled, one_round, (keep, torch.ones((), dtype=torch.bool)))
    return keep


def nms(boxes: Tensor, scores: Tensor, threshold: float, use_min: bool = False,
        plus_one: bool = False) -> Tensor:
    """Greedy NMS: indices of the boxes kept, highest score first. A box is dropped when a kept
    box of higher score overlaps it by more than `threshold`."""
    order = torch.argsort(scores, descending=True, stable=True)
    overlap = overlap_matrix(boxes[order], use_min, plus_one)
    # suppresses[i, j]: i comes before j and overlaps it too much.
    suppresses = torch.triu(overlap > threshold, diagonal=1)
    if torch.jit.is_scripting():
        keep = _greedy_fixed_point(suppresses)
    elif _compiling():
        keep = _greedy_fixed_point_exported(suppresses)
    else:
        keep = _greedy_fixed_point(suppresses)
    return order[keep]


def area_weights(starts: Tensor, lengths: Tensor, size: int, extent: int) -> Tensor:
    """[N, size, extent] weights that resize the segment [start, start + length) of an axis of
    `extent` pixels to `size` pixels as interpolate(mode="area") (adaptive average pooling)
    does: output i averages input pixels floor(i L / size) to ceil((i + 1) L / size)."""
    i = torch.arange(size, dtype=torch.int64)[None, :, None]
    length = lengths[:, None, None]
    first = starts[:, None, None] + torch.div(i * length, size, rounding_mode="floor")
    last = starts[:, None, None] - torch.div(-(i + 1) * length, size, rounding_mode="floor")
    pixel = torch.arange(extent, dtype=torch.int64)[None, None, :]
    inside = (pixel >= first) & (pixel < last)
    return inside.to(torch.float32) / (last - first).to(torch.float32)


def crop_and_resize(image: Tensor, boxes: Tensor, size: int) -> Tensor:
    """Every box's region of `image` (1 x 3 x H x W float) resized to size x size, normalized as
    MTCNN's networks expect. Boxes are cut as facenet-pytorch's pad() cuts them: truncated to
    integers and clamped to the image (no padding outside it)."""
    height, width = image.shape[2], image.shape[3]
    corners = boxes[:, :4].trunc().to(torch.int64)
    x = corners[:, 0].clamp(min=1)
    y = corners[:, 1].clamp(min=1)
    ex = corners[:, 2].clamp(max=width)
    ey = corners[:, 3].clamp(max=height)
    rows = area_weights(y - 1, ey - y + 1, size, height)  # [N, size, H]
    columns = area_weights(x - 1, ex - x + 1, size, width)  # [N, size, W]
    crops = torch.matmul(torch.matmul(rows[:, None], image), columns[:, None].transpose(2, 3))
    return (crops - 127.5) * 0.0078125


def with_spare_crop(image: Tensor, boxes: Tensor, size: int) -> Tensor:
    """Every box's crop and one spare crop after them, whose outputs the caller drops. RNet and
    ONet flatten with view(n, -1), which no batch of 0 crops passes; facenet-pytorch branches on
    the count instead, a branch on data that torch.export cannot take."""
    spare = torch.tensor([[1.0, 1.0, float(size), float(size)]], dtype=boxes.dtype)
    return crop_and_resize(image, torch.cat([boxes[:, :4], spare], dim=0), size)


def square(boxes: Tensor) -> Tensor:
    """facenet-pytorch's rerec: each box grown to a square on its longer side, same center."""
    height = boxes[:, 3] - boxes[:, 1]
    width = boxes[:, 2] - boxes[:, 0]
    side = torch.maximum(width, height)
    x1 = boxes[:, 0] + width * 0.5 - side * 0.5
    y1 = boxes[:, 1] + height * 0.5 - side * 0.5
    return torch.cat([torch.stack([x1, y1, x1 + side, y1 + side], dim=1), boxes[:, 4:]], dim=1)


def regress(boxes: Tensor, offsets: Tensor) -> Tensor:
    """facenet-pytorch's bbreg: corners moved by the network's offsets, in units of the box's
    inclusive pixel size."""
    width = boxes[:, 2] - boxes[:, 0] + 1
    height = boxes[:, 3] - boxes[:, 1] + 1
    moved = torch.stack([boxes[:, 0] + offsets[:, 0] * width, boxes[:, 1] + offsets[:, 1] * height,
                         boxes[:, 2] + offsets[:, 2] * width, boxes[:, 3] + offsets[:, 3] * height],
                        dim=1)
    return torch.cat([moved, boxes[:, 4:]], dim=1)


class FaceDetector(torch.nn.Module):
    """uint8 H x W x 3 RGB image in; (boxes [N, 4], scores [N], landmarks [N, 5, 2]) out."""

    def __init__(self, pnet: torch.nn.Module, rnet: torch.nn.Module, onet: torch.nn.Module,
                 min_face_size: float = 20.0, thresholds: Tuple[float, float, float] = (0.6, 0.7,
                                                                                         0.7),
                 factor: float = 0.709):
        super().__init__()
        self.pnet = pnet
        self.rnet = rnet
        self.onet = onet
        self.min_face_size = float(min_face_size)
        self.thresholds = [float(t) for t in thresholds]
        self.factor = float(factor)

    def candidates(self, image: Tensor) -> Tensor:
        """Stage 1: PNet over the pyramid; [N, 9] rows of box, score and PNet's offsets."""
        height, width = image.shape[2], image.shape[3]
        per_scale: List[Tensor] = []
        for scale in pyramid_scales(height, width, self.min_face_size, self.factor):
            resized = F.interpolate(image, size=(int(height * scale + 1), int(width * scale + 1)),
                                    mode="area")
            offsets, probabilities = self.pnet((resized - 127.5) * 0.0078125)
            face = probabilities[0, 1]
            hit = face >= self.thresholds[0]
            cells = hit.nonzero()
            # Each output cell sees a 12 x 12 window at stride 2 of the resized image.
            corner = cells.flip(1).to(torch.float32)
            first = ((2 * corner + 1) / scale).floor()
            last = ((2 * corner + 12) / scale).floor()
            found = torch.cat([first, last, face[hit][:, None], offsets[0][:, hit].t()], dim=1)
            per_scale.append(found[nms(found[:, :4], found[:, 4], 0.5)])
        boxes = torch.cat(per_scale, dim=0)
        boxes = boxes[nms(boxes[:, :4], boxes[:, 4], 0.7)]
        # PNet's offsets are in units of the box's size, without the +1 of the later stages.
        width_ = boxes[:, 2] - boxes[:, 0]
        height_ = boxes[:, 3] - boxes[:, 1]
        moved = torch.stack([boxes[:, 0] + boxes[:, 5] * width_, boxes[:, 1] + boxes[:, 6] * height_,
                             boxes[:, 2] + boxes[:, 7] * width_, boxes[:, 3] + boxes[:, 8] * height_,
                             boxes[:, 4]], dim=1)
        return square(moved)

    def refine(self, image: Tensor, boxes: Tensor) -> Tensor:
        """Stage 2: RNet on 24 x 24 crops; [N, 5] boxes with RNet's scores."""
        offsets, probabilities = self.rnet(with_spare_crop(image, boxes, 24))
        offsets, probabilities = offsets[:-1], probabilities[:-1]
        score = probabilities[:, 1]
        passed = score > self.thresholds[1]
        boxes = torch.cat([boxes[passed][:, :4], score[passed][:, None]], dim=1)
        offsets = offsets[passed]
        keep = nms(boxes[:, :4], boxes[:, 4], 0.7)
        return square(regress(boxes[keep], offsets[keep]))

    def output(self, image: Tensor, boxes: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """Stage 3: ONet on 48 x 48 crops; final boxes, scores and five landmarks."""
        offsets, points, probabilities = self.onet(with_spare_crop(image, boxes, 48))
        offsets, points, probabilities = offsets[:-1], points[:-1], probabilities[:-1]
        score = probabilities[:, 1]
        passed = score > self.thresholds[2]
        boxes = torch.cat([boxes[passed][:, :4], score[passed][:, None]], dim=1)
        points = points[passed]
        width = (boxes[:, 2] - boxes[:, 0] + 1)[:, None]
        height = (boxes[:, 3] - boxes[:, 1] + 1)[:, None]
        landmarks = torch.stack([width * points[:, :5] + boxes[:, 0:1] - 1,
                                 height * points[:, 5:10] + boxes[:, 1:2] - 1], dim=2)
        boxes = regress(boxes, offsets[passed])
        keep = nms(boxes[:, :4], boxes[:, 4], 0.7, use_min=True, plus_one=True)
        return boxes[keep][:, :4], boxes[keep][:, 4], landmarks[keep]

    def forward(self, image: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        pixels = image.permute(2, 0, 1)[None].to(torch.float32)
        boxes, scores, landmarks = self.output(pixels, self.refine(pixels, self.candidates(pixels)))
        # Largest first, as MTCNN.detect(select_largest=True) orders them.
        areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        order = torch.argsort(areas, descending=True, stable=True)
        return boxes[order], scores[order], landmarks[order]


def pretrained_face_detector() -> FaceDetector:
    """facenet-pytorch's pretrained PNet, RNet and ONet (its data/*.pt) in the pipeline."""
    from facenet_pytorch.models.mtcnn import ONet, PNet, RNet
    return FaceDetector(PNet().eval(), RNet().eval(), ONet().eval()).eval()
