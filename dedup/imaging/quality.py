"""Face quality measures and the thresholds that gate them.

The measures are simple and explainable, because an operator must be able to read a reject
detail and act on it (re-capture in better light, hold the camera still):

- inter-eye distance in photo pixels: resolution on the face;
- sharpness: how much of the face's fine detail survives, as 100 x the energy of the finest
  band over that of the next band, on the face box resampled (area-averaged) to 96x96 pixels.
  Resampling first makes it independent of photo resolution and of the aliasing of the chip
  cut; the ratio makes it independent of exposure and contrast. Measured on the test portraits:
  sharp originals 34 to 45, Gaussian blur of radius 2 px 15 to 23, radius 4 about 10; JPEG
  quality 10 to 95 and brightness 0.3x to 1.2x move it by less than 2. (The classic variance of
  the Laplacian on the chip moved 6x under a JPEG re-encode and is not used.)
- brightness and clipped fraction of the grey chip: exposure;
- detector confidence: dlib's HOG score;
- pose: roll from the eye line, yaw estimated from the nose base's offset from the eyes' mid-point
  (a rough estimate from 5 points, good enough to catch profile shots);
- how much of the face box lies outside the photo (a face cut by the frame).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image

from dedup.contracts.reasons import RejectReason, RowRejected
from dedup.imaging.align import eye_centres
from dedup.imaging.decode import RGBImage
from dedup.imaging.detect import Box, Face
from dedup.settings import QualitySettings

# Depth of the nose base in front of the eye corners, relative to half the inter-eye
# distance, for an average adult face: turns the nose's sideways offset into a yaw angle.
_NOSE_DEPTH_RATIO = 0.6


@dataclass(frozen=True)
class Quality:
    inter_eye_px: float
    sharpness: float
    brightness: float
    clipped_fraction: float
    detector_score: float
    yaw_deg: float
    roll_deg: float

    def as_row(self) -> dict[str, float]:
        return {key: float(value) for key, value in asdict(self).items()}


def grey(rgb: RGBImage) -> np.ndarray:
    return rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)


_SHARPNESS_SIDE = 96


def _gaussian_blur(gray: np.ndarray, sigma: int) -> np.ndarray:
    radius = 3 * sigma
    taps = np.arange(-radius, radius + 1, dtype=np.float32)
    kernel = np.exp(-(taps**2) / (2.0 * sigma * sigma))
    kernel /= kernel.sum()
    padded = np.pad(gray, radius, mode="reflect")
    rows = np.apply_along_axis(np.convolve, 1, padded, kernel, "valid")
    return np.asarray(np.apply_along_axis(np.convolve, 0, rows, kernel, "valid"))


def band_sharpness(gray: np.ndarray) -> float:
    """100 x var(finest band) / var(next band) of a grey face crop."""
    once = _gaussian_blur(gray, 1)
    fine = gray - once
    coarse = once - _gaussian_blur(gray, 3)
    return float(100.0 * fine.var() / max(float(coarse.var()), 1e-6))


def face_sharpness(rgb: RGBImage, box: Box) -> float:
    height, width = rgb.shape[:2]
    crop = Image.fromarray(rgb).crop(
        (max(box.left, 0), max(box.top, 0), min(box.right, width), min(box.bottom, height))
    )
    side = (_SHARPNESS_SIDE, _SHARPNESS_SIDE)
    return band_sharpness(grey(np.asarray(crop.resize(side, Image.Resampling.BOX))))


def pose_angles(landmarks: np.ndarray) -> tuple[float, float]:
    """(yaw, roll) in degrees from dlib's 5 points."""
    left, right = eye_centres(landmarks)
    axis = right - left
    inter_eye = float(np.hypot(*axis))
    roll = math.degrees(math.atan2(axis[1], axis[0]))
    unit = axis / max(inter_eye, 1e-6)
    offset = float((landmarks[4].astype(np.float64) - (left + right) / 2.0) @ unit)
    ratio = offset / max(inter_eye / 2.0, 1e-6)
    yaw = math.degrees(math.atan(ratio / _NOSE_DEPTH_RATIO))
    return yaw, roll


def measure_quality(face: Face, chip: RGBImage, photo: RGBImage) -> Quality:
    left, right = eye_centres(face.landmarks)
    gray = grey(chip)
    yaw, roll = pose_angles(face.landmarks)
    clipped = float(np.mean((gray <= 5.0) | (gray >= 250.0)))
    return Quality(
        inter_eye_px=float(np.hypot(*(right - left))),
        sharpness=face_sharpness(photo, face.box),
        brightness=float(gray.mean()),
        clipped_fraction=clipped,
        detector_score=face.score,
        yaw_deg=yaw,
        roll_deg=roll,
    )


def check_quality(quality: Quality, outside_fraction: float, thresholds: QualitySettings) -> None:
    """Raise ``RowRejected`` naming every failed measure, its value and its threshold."""
    failed: list[str] = []
    t = thresholds
    if quality.inter_eye_px < t.min_inter_eye_px:
        failed.append(f"inter_eye_px {quality.inter_eye_px:.1f} < {t.min_inter_eye_px}")
    if quality.sharpness < t.min_sharpness:
        failed.append(f"sharpness {quality.sharpness:.1f} < {t.min_sharpness}")
    if quality.brightness < t.min_brightness:
        failed.append(f"brightness {quality.brightness:.1f} < {t.min_brightness}")
    if quality.brightness > t.max_brightness:
        failed.append(f"brightness {quality.brightness:.1f} > {t.max_brightness}")
    if quality.clipped_fraction > t.max_clipped_fraction:
        failed.append(f"clipped_fraction {quality.clipped_fraction:.2f} > {t.max_clipped_fraction}")
    if quality.detector_score < t.min_detector_score:
        failed.append(f"detector_score {quality.detector_score:.2f} < {t.min_detector_score}")
    if abs(quality.yaw_deg) > t.max_abs_yaw_deg:
        failed.append(f"|yaw_deg| {abs(quality.yaw_deg):.1f} > {t.max_abs_yaw_deg}")
    if abs(quality.roll_deg) > t.max_abs_roll_deg:
        failed.append(f"|roll_deg| {abs(quality.roll_deg):.1f} > {t.max_abs_roll_deg}")
    if outside_fraction > t.max_box_outside_fraction:
        failed.append(f"face_outside_photo {outside_fraction:.2f} > {t.max_box_outside_fraction}")
    if failed:
        raise RowRejected(RejectReason.QUALITY_BELOW_THRESHOLD, "; ".join(failed))
