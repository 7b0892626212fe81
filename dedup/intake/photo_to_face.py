"""What the stage job does to one photo: read, decode, detect, align, measure.

Engine-free so that the Spark job, the single-process benchmark loop and the unit tests run
exactly the same code. A photo that fails any check raises ``RowRejected``; anything else
that escapes is a bug, not bad input.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from dedup.imaging.align import alignment_template
from dedup.imaging.decode import decode_photo
from dedup.imaging.detect import Box, face_analyser, select_single_face
from dedup.imaging.quality import Quality, check_quality, measure_quality
from dedup.settings import Settings


@dataclass(frozen=True)
class StagedFace:
    alignment: str
    chip_png: bytes
    photo_sha256: str
    image_width: int
    image_height: int
    box: Box
    landmarks: list[float]
    quality: Quality

    def as_row(self) -> dict[str, Any]:
        """The face's columns of the ``faces`` table (keys and timestamps are added by the job)."""
        return {
            "alignment": self.alignment,
            "chip_png": self.chip_png,
            "photo_sha256": self.photo_sha256,
            "image_width": self.image_width,
            "image_height": self.image_height,
            "box": {
                "left": self.box.left,
                "top": self.box.top,
                "right": self.box.right,
                "bottom": self.box.bottom,
            },
            "landmarks": self.landmarks,
            "quality": self.quality.as_row(),
        }


def encode_png(rgb: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue()


def stage_photo(data: bytes, settings: Settings) -> StagedFace:
    """Photo bytes to an aligned chip with landmarks and quality, or raise ``RowRejected``."""
    photo = decode_photo(data, settings.imaging)
    analyser = face_analyser()
    detections = analyser.detect(photo.rgb, settings.detection, settings.imaging.detection_max_side)
    chosen = select_single_face(detections, settings.detection)
    face = analyser.landmarks(photo.rgb, chosen)
    template = alignment_template(settings.model_spec.alignment)
    chip = template.cut(photo.rgb, face)
    quality = measure_quality(face, chip, photo.rgb)
    check_quality(quality, face.box.outside_fraction(photo.width, photo.height), settings.quality)
    return StagedFace(
        alignment=template.name,
        chip_png=encode_png(chip),
        photo_sha256=photo.sha256,
        image_width=photo.width,
        image_height=photo.height,
        box=face.box,
        landmarks=[float(v) for v in face.landmarks.ravel()],
        quality=quality,
    )
