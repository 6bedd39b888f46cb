"""The manifest stored in every torchship archive as ``torchship.json`` (docs/manifest.md)."""

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

from .errors import ManifestError

FORMAT_VERSION = 1

DATATYPES = ("BOOL", "UINT8", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32", "FP64", "BF16")
TASKS = ("classification", "segmentation", "detection", "generic")
BOX_FORMATS = ("xyxy", "xywh", "cxcywh")
BOX_FRAMES = ("pixels", "normalized")
LAYOUTS = ("HWC", "BHWC", "CHW", "BCHW")
COLORS = ("RGB", "BGR", "GRAY")
INTERPOLATIONS = ("nearest", "linear", "area", "cubic")


@dataclass
class TensorSpec:
    """One input or output: its name (the forward argument's), datatype, shape (-1 = free)."""

    name: str
    datatype: Optional[str] = None
    shape: Optional[Sequence[int]] = None
    layout: Optional[str] = None
    image: Optional[Dict[str, Any]] = None
    kind: Optional[str] = None

    def free_dims(self, batch_dim: bool) -> List[int]:
        """Dimensions whose size may vary (-1 in the shape, and the batch dimension)."""
        dims = [i for i, size in enumerate(self.shape or []) if size == -1]
        return sorted(set(dims + ([0] if batch_dim and self.shape else [])))

    def to_dict(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {"name": self.name}
        for key in ("datatype", "layout", "image", "kind"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        if self.shape is not None:
            out["shape"] = [int(d) for d in self.shape]
        return out


def image_input(name: str = "image", *, color: str = "RGB", layout: str = "HWC",
                datatype: str = "UINT8", resize: Optional[Sequence[int]] = None,
                interpolation: str = "linear") -> TensorSpec:
    """An image argument: C++ decodes a file into `color`, resizes it to `resize` = (height,
    width) when given (cv2.resize semantics), and lays it out as `layout`."""
    channels = 1 if color == "GRAY" else 3
    image: Dict[str, Any] = {"color": color}
    if resize is not None:
        image["resize"] = {"mode": "stretch", "size": [int(resize[0]), int(resize[1])],
                           "interpolation": interpolation}
    height, width = (int(resize[0]), int(resize[1])) if resize is not None else (-1, -1)
    shape = {"HWC": [height, width, channels], "BHWC": [-1, height, width, channels],
             "CHW": [channels, height, width], "BCHW": [-1, channels, height, width]}[layout]
    return TensorSpec(name=name, datatype=datatype, shape=shape, layout=layout, image=image)


def tensor_spec(name: str, datatype: Optional[str] = None, shape: Optional[Sequence[int]] = None,
                kind: Optional[str] = None) -> TensorSpec:
    return TensorSpec(name=name, datatype=datatype, shape=shape, kind=kind)


@dataclass
class Detection:
    """Which outputs of a detector hold what, per object: `boxes` [N, 4] in `box_format`
    (x1 y1 x2 y2, x y w h or cx cy w h) and `box_frame` ("pixels" of the image input as the
    model receives it, after the manifest's resize, or "normalized" to 0..1 of its width and
    height); `scores` [N]; optionally `labels` [N] (class indices into the manifest's labels) and
    `keypoints` [N, K, 2] (x y in the boxes' frame) named by `keypoint_names`. C++ maps boxes
    and keypoints back to the pixels of the image it was given."""

    boxes: str = "boxes"
    scores: str = "scores"
    labels: Optional[str] = None
    keypoints: Optional[str] = None
    keypoint_names: List[str] = field(default_factory=list)
    box_format: str = "xyxy"
    box_frame: str = "pixels"

    def validate(self, outputs: Sequence[TensorSpec]) -> None:
        if self.box_format not in BOX_FORMATS:
            raise ManifestError(f"detection.box_format must be one of {', '.join(BOX_FORMATS)}, "
                                f"got {self.box_format!r}")
        if self.box_frame not in BOX_FRAMES:
            raise ManifestError(f"detection.box_frame must be one of {', '.join(BOX_FRAMES)}, "
                                f"got {self.box_frame!r}")
        names = [spec.name for spec in outputs]
        for role in ("boxes", "scores", "labels", "keypoints"):
            output = getattr(self, role)
            if output is not None and names and output not in names:
                raise ManifestError(f"detection.{role} names output {output!r}, but the outputs "
                                    f"are {', '.join(names)}")

    def to_dict(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {"boxes": self.boxes, "box_format": self.box_format,
                               "box_frame": self.box_frame, "scores": self.scores}
        if self.labels is not None:
            out["labels"] = self.labels
        if self.keypoints is not None:
            out["keypoints"] = self.keypoints
            out["keypoint_names"] = list(self.keypoint_names)
        return out


@dataclass
class Manifest:
    name: str = ""
    task: str = "generic"
    inputs: List[TensorSpec] = field(default_factory=list)
    outputs: List[TensorSpec] = field(default_factory=list)
    labels: List[str] = field(default_factory=list)
    batch_dim: bool = False
    detection: Optional[Detection] = None  # task "detection": which output holds what

    def validate(self) -> None:
        if self.task not in TASKS:
            raise ManifestError(f"manifest task must be one of {', '.join(TASKS)}, "
                                f"got {self.task!r}")
        if (self.task == "detection") != (self.detection is not None):
            raise ManifestError("a manifest has a detection section exactly when its task is "
                                f"detection (task {self.task!r}, detection "
                                f"{'given' if self.detection is not None else 'missing'})")
        if self.detection is not None:
            self.detection.validate(self.outputs)
        for spec in list(self.inputs) + list(self.outputs):
            if spec.datatype is not None and spec.datatype not in DATATYPES:
                raise ManifestError(f"{spec.name}: datatype must be one of "
                                    f"{', '.join(DATATYPES)}, got {spec.datatype!r}")
            if spec.layout is not None and spec.layout not in LAYOUTS:
                raise ManifestError(f"{spec.name}: layout must be one of {', '.join(LAYOUTS)}, "
                                    f"got {spec.layout!r}")
            if spec.image is not None:
                color = spec.image.get("color", "RGB")
                if color not in COLORS:
                    raise ManifestError(f"{spec.name}: image color must be one of "
                                        f"{', '.join(COLORS)}, got {color!r}")
                resize = spec.image.get("resize")
                if resize and resize.get("interpolation", "linear") not in INTERPOLATIONS:
                    raise ManifestError(f"{spec.name}: interpolation must be one of "
                                        f"{', '.join(INTERPOLATIONS)}")

    def to_dict(self, export_info: Dict[str, Any], precision: str = "fp32") -> Dict[str, Any]:
        self.validate()
        out = {
            "format": "torchship",
            "format_version": FORMAT_VERSION,
            "name": self.name,
            "task": self.task,
            "inputs": [spec.to_dict() for spec in self.inputs],
            "outputs": [spec.to_dict() for spec in self.outputs],
            "labels": list(self.labels),
            "batch_dim": bool(self.batch_dim),
            "precision": precision,
            "export": export_info,
        }
        if self.detection is not None:
            out["detection"] = self.detection.to_dict()
        return out
