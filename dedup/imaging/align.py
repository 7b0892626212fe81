"""Alignment templates: how a face is cut into the chip a model expects.

The template is a property of the model (``ModelSpec.alignment``), so adding a model with a
different chip is adding an entry here, not changing the stage job.

- ``dlib-150``: dlib's own 150x150 chip with padding 0.25, cut by ``dlib.get_face_chip`` so
  that our templates match what dlib's face recogniser was trained on.
- ``arcface-112``: the 112x112 chip of ArcFace-style models, a similarity transform taking the
  eye centres and nose base onto the standard ArcFace reference points.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from dedup.errors import ConfigError
from dedup.imaging.decode import RGBImage
from dedup.imaging.detect import Face, face_analyser


@dataclass(frozen=True)
class AlignmentTemplate:
    name: str
    size: int
    cut: Callable[[RGBImage, Face], RGBImage]


def _dlib_chip(rgb: RGBImage, face: Face) -> RGBImage:
    dlib = face_analyser().dlib
    chip = dlib.get_face_chip(rgb, face.shape, size=150, padding=0.25)
    return np.ascontiguousarray(chip, dtype=np.uint8)


# ArcFace's 112x112 reference: eye centres and (between the mouth corners' line and the eyes)
# the nose tip. dlib's 5 points give the nose base, a little below the tip; the offset is
# absorbed by the similarity fit over three points.
_ARCFACE_REF = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366]])


def eye_centres(landmarks: NDArray[np.float32]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """(image-left eye centre, image-right eye centre) from dlib's 5 points."""
    pts = landmarks.astype(np.float64)
    return (pts[2] + pts[3]) / 2.0, (pts[0] + pts[1]) / 2.0


def similarity_transform(src: NDArray[np.float64], dst: NDArray[np.float64]) -> NDArray[np.float64]:
    """Least-squares similarity (Umeyama) mapping src points onto dst; a 2x3 matrix."""
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    cov = dst_c.T @ src_c / len(src)
    u, s, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[-1] = -1
    rotation = u @ np.diag(d) @ vt
    scale = float((s * d).sum() / src_c.var(axis=0).sum())
    translation = dst_mean - scale * rotation @ src_mean
    return np.hstack([scale * rotation, translation[:, None]])


def _arcface_chip(rgb: RGBImage, face: Face) -> RGBImage:
    left, right = eye_centres(face.landmarks)
    src = np.array([left, right, face.landmarks[4].astype(np.float64)])
    forward = np.vstack([similarity_transform(src, _ARCFACE_REF), [0.0, 0.0, 1.0]])
    inverse = np.linalg.inv(forward)[:2]  # Pillow maps output pixels back to input pixels
    chip = Image.fromarray(rgb).transform(
        (112, 112),
        Image.Transform.AFFINE,
        tuple(inverse.ravel()),
        resample=Image.Resampling.BILINEAR,
    )
    return np.asarray(chip, dtype=np.uint8)


TEMPLATES: dict[str, AlignmentTemplate] = {
    "dlib-150": AlignmentTemplate("dlib-150", 150, _dlib_chip),
    "arcface-112": AlignmentTemplate("arcface-112", 112, _arcface_chip),
}


def alignment_template(name: str) -> AlignmentTemplate:
    try:
        return TEMPLATES[name]
    except KeyError:
        raise ConfigError(
            f"unknown alignment template {name!r}; known: {', '.join(sorted(TEMPLATES))}"
        ) from None
