"""Face quality measures and their gate, on synthetic images and landmarks (no dlib)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from PIL import Image, ImageFilter

from dedup.contracts.reasons import RejectReason, RowRejected
from dedup.imaging.detect import Box, Face
from dedup.imaging.quality import (
    Quality,
    band_sharpness,
    check_quality,
    face_sharpness,
    measure_quality,
    pose_angles,
)
from dedup.settings import QualitySettings

THRESHOLDS = QualitySettings()


def textured_grey(side: int = 96, seed: int = 0) -> np.ndarray:
    """Fine random texture in 40..200, so that brightness changes do not clip."""
    rng = np.random.default_rng(seed)
    return rng.integers(40, 201, (side, side)).astype(np.uint8)


def blurred(grey: np.ndarray, radius: float) -> np.ndarray:
    return np.asarray(Image.fromarray(grey).filter(ImageFilter.GaussianBlur(radius)))


def as_rgb(grey: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.repeat(grey[:, :, None], 3, axis=2))


def relative_change(a: float, b: float) -> float:
    return abs(a - b) / max(abs(a), 1e-9)


# --- sharpness -------------------------------------------------------------------------------


@pytest.mark.parametrize("radius", [1.5, 3.0])
def test_band_sharpness_drops_under_blur(radius: float) -> None:
    sharp = textured_grey().astype(np.float32)
    soft = blurred(textured_grey(), radius).astype(np.float32)
    assert band_sharpness(soft) < band_sharpness(sharp) / 3


def test_band_sharpness_orders_blur_strength() -> None:
    texture = textured_grey()
    scores = [band_sharpness(blurred(texture, r).astype(np.float32)) for r in (0.5, 1.0, 1.5, 2.0)]
    assert scores == sorted(scores, reverse=True)


@pytest.mark.parametrize("gain", [0.5, 0.3, 1.2])
def test_band_sharpness_ignores_contrast(gain: float) -> None:
    texture = blurred(textured_grey(), 0.8).astype(np.float32)
    assert relative_change(band_sharpness(texture), band_sharpness(texture * gain)) < 0.02


@pytest.mark.parametrize("offset", [-30.0, 40.0])
def test_band_sharpness_ignores_a_constant(offset: float) -> None:
    texture = blurred(textured_grey(), 0.8).astype(np.float32)
    assert relative_change(band_sharpness(texture), band_sharpness(texture + offset)) < 0.02


def test_band_sharpness_of_a_flat_image_is_zero() -> None:
    assert band_sharpness(np.full((96, 96), 120.0, dtype=np.float32)) == pytest.approx(0.0)


def test_face_sharpness_drops_under_blur_and_ignores_exposure() -> None:
    texture = blurred(textured_grey(288, seed=3), 1.0)  # a 288 px face, resampled to 96
    rgb = as_rgb(texture)
    box = Box(left=0, top=0, right=288, bottom=288)
    sharp = face_sharpness(rgb, box)

    assert face_sharpness(as_rgb(blurred(texture, 4.0)), box) < sharp / 3
    darker = as_rgb((texture.astype(np.float32) * 0.5).round().astype(np.uint8))
    assert relative_change(sharp, face_sharpness(darker, box)) < 0.05
    brighter = as_rgb(texture + np.uint8(40))  # texture <= 200: no overflow
    assert relative_change(sharp, face_sharpness(brighter, box)) < 0.05


def test_face_sharpness_measures_only_the_face_box() -> None:
    # Sharp texture inside the box, heavy blur everywhere else: scored like the sharp face.
    texture = textured_grey(300, seed=5)
    soft = blurred(texture, 4.0).copy()
    soft[100:200, 50:150] = texture[100:200, 50:150]
    box = Box(left=50, top=100, right=150, bottom=200)
    reference = face_sharpness(as_rgb(texture), box)
    assert relative_change(reference, face_sharpness(as_rgb(soft), box)) < 0.02
    assert face_sharpness(as_rgb(soft), Box(left=180, top=0, right=280, bottom=100)) < (
        reference / 3
    )


def test_face_sharpness_of_a_box_running_off_the_photo() -> None:
    rgb = as_rgb(textured_grey(200, seed=9))
    inside = face_sharpness(rgb, Box(left=0, top=50, right=100, bottom=150))
    cut = face_sharpness(rgb, Box(left=-50, top=50, right=100, bottom=150))
    assert math.isfinite(cut)
    assert cut > 0.5 * inside  # the visible part is measured, the missing part ignored


# --- pose ------------------------------------------------------------------------------------

# A level frontal face in dlib's 5-point order: the eye on the image's right (outer, inner),
# the eye on the image's left (outer, inner), the nose base. Eye centres at x 70 and 130.
FRONTAL = np.array(
    [[145.0, 100.0], [115.0, 100.0], [55.0, 100.0], [85.0, 100.0], [100.0, 140.0]],
    dtype=np.float32,
)


def rotated(points: np.ndarray, degrees: float, centre: tuple[float, float]) -> np.ndarray:
    """Rotate in image coordinates (x right, y down): positive angles turn clockwise on screen."""
    angle = math.radians(degrees)
    matrix = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    origin = np.array(centre)
    turned: np.ndarray = (points.astype(np.float64) - origin) @ matrix.T + origin
    return turned.astype(np.float32)


def test_level_frontal_face_has_no_yaw_or_roll() -> None:
    yaw, roll = pose_angles(FRONTAL)
    assert yaw == pytest.approx(0.0, abs=1e-6)
    assert roll == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("degrees", [10.0, -10.0, 25.0])
def test_roll_follows_rotation(degrees: float) -> None:
    yaw, roll = pose_angles(rotated(FRONTAL, degrees, (100.0, 110.0)))
    assert roll == pytest.approx(degrees, abs=0.01)
    assert yaw == pytest.approx(0.0, abs=0.01)  # turning the head in-plane is not yaw


@pytest.mark.parametrize("shift", [6.0, -6.0, 15.0, -15.0])
def test_yaw_sign_follows_the_nose_shift(shift: float) -> None:
    landmarks = FRONTAL.copy()
    landmarks[4, 0] += shift
    yaw, roll = pose_angles(landmarks)
    assert math.copysign(1.0, yaw) == math.copysign(1.0, shift)
    assert 2.0 < abs(yaw) < 90.0
    assert roll == pytest.approx(0.0, abs=1e-6)


def test_yaw_grows_with_the_shift_and_ignores_nose_height() -> None:
    yaws = []
    for shift in (0.0, 5.0, 10.0, 20.0):
        landmarks = FRONTAL.copy()
        landmarks[4, 0] += shift
        yaws.append(pose_angles(landmarks)[0])
    assert yaws == sorted(yaws)
    assert len(set(yaws)) == 4
    lower_nose = FRONTAL.copy()
    lower_nose[4, 1] += 30.0
    assert pose_angles(lower_nose)[0] == pytest.approx(0.0, abs=1e-6)


def test_yaw_is_measured_along_the_eye_line_of_a_tilted_face() -> None:
    shifted = FRONTAL.copy()
    shifted[4, 0] += 10.0
    upright_yaw = pose_angles(shifted)[0]
    yaw, roll = pose_angles(rotated(shifted, 20.0, (100.0, 110.0)))
    assert roll == pytest.approx(20.0, abs=0.01)
    assert yaw == pytest.approx(upright_yaw, abs=0.01)


# --- measure_quality -------------------------------------------------------------------------


def test_measure_quality_on_a_synthetic_chip() -> None:
    photo = as_rgb(textured_grey(200, seed=11))
    box = Box(left=40, top=40, right=160, bottom=160)
    face = Face(box=box, score=1.25, landmarks=FRONTAL, shape=None)
    chip = np.full((150, 150, 3), 100, dtype=np.uint8)
    chip[:, :30] = 0  # a fifth black: clipped
    chip[:, 30:60] = 255  # a fifth white: clipped

    quality = measure_quality(face, chip, photo)

    assert quality.inter_eye_px == pytest.approx(60.0)
    assert quality.clipped_fraction == pytest.approx(0.4)
    assert quality.brightness == pytest.approx((0 + 255 + 3 * 100) / 5, abs=0.1)
    assert quality.detector_score == 1.25
    assert quality.yaw_deg == pytest.approx(0.0, abs=1e-6)
    assert quality.roll_deg == pytest.approx(0.0, abs=1e-6)
    assert quality.sharpness == pytest.approx(face_sharpness(photo, box))
    assert set(quality.as_row()) == {f.name for f in dataclasses.fields(Quality)}


# --- check_quality ---------------------------------------------------------------------------

GOOD = Quality(
    inter_eye_px=110.0,
    sharpness=40.0,
    brightness=130.0,
    clipped_fraction=0.01,
    detector_score=1.5,
    yaw_deg=-5.0,
    roll_deg=2.0,
)


def test_good_quality_passes() -> None:
    check_quality(GOOD, 0.0, THRESHOLDS)
    check_quality(GOOD, THRESHOLDS.max_box_outside_fraction, THRESHOLDS)


def test_every_failed_measure_is_named_with_its_value() -> None:
    bad = dataclasses.replace(GOOD, sharpness=9.7, brightness=20.1)
    with pytest.raises(RowRejected) as caught:
        check_quality(bad, 0.0, THRESHOLDS)
    assert caught.value.reason is RejectReason.QUALITY_BELOW_THRESHOLD
    detail = caught.value.detail
    assert "sharpness 9.7 < 22.0" in detail
    assert "brightness 20.1 < 50.0" in detail
    assert "yaw" not in detail
    assert "inter_eye" not in detail


@pytest.mark.parametrize(
    ("change", "outside", "expected"),
    [
        ({"inter_eye_px": 20.0}, 0.0, "inter_eye_px 20.0 < 30.0"),
        ({"sharpness": 12.0}, 0.0, "sharpness 12.0 < 22.0"),
        ({"brightness": 49.0}, 0.0, "brightness 49.0 < 50.0"),
        ({"brightness": 230.0}, 0.0, "brightness 230.0 > 215.0"),
        ({"clipped_fraction": 0.35}, 0.0, "clipped_fraction 0.35 > 0.2"),
        ({"detector_score": 0.1}, 0.0, "detector_score 0.10 < 0.3"),
        ({"yaw_deg": -40.0}, 0.0, "|yaw_deg| 40.0 > 35.0"),
        ({"yaw_deg": 40.0}, 0.0, "|yaw_deg| 40.0 > 35.0"),
        ({"roll_deg": -31.0}, 0.0, "|roll_deg| 31.0 > 30.0"),
        ({}, 0.23, "face_outside_photo 0.23 > 0.05"),
    ],
)
def test_each_measure_fails_alone(change: dict[str, float], outside: float, expected: str) -> None:
    with pytest.raises(RowRejected) as caught:
        check_quality(dataclasses.replace(GOOD, **change), outside, THRESHOLDS)
    assert caught.value.reason is RejectReason.QUALITY_BELOW_THRESHOLD
    assert caught.value.detail == expected


def test_every_measure_fails_together() -> None:
    awful = Quality(
        inter_eye_px=10.0,
        sharpness=5.0,
        brightness=10.0,
        clipped_fraction=0.9,
        detector_score=0.0,
        yaw_deg=60.0,
        roll_deg=45.0,
    )
    with pytest.raises(RowRejected) as caught:
        check_quality(awful, 0.5, THRESHOLDS)
    names = [part.split()[0] for part in caught.value.detail.split("; ")]
    assert names == [
        "inter_eye_px",
        "sharpness",
        "brightness",
        "clipped_fraction",
        "detector_score",
        "|yaw_deg|",
        "|roll_deg|",
        "face_outside_photo",
    ]


def test_thresholds_come_from_the_settings() -> None:
    strict = QualitySettings(min_sharpness=50.0)
    with pytest.raises(RowRejected) as caught:
        check_quality(GOOD, 0.0, strict)
    assert caught.value.detail == "sharpness 40.0 < 50.0"
    lenient = QualitySettings(min_brightness=5.0, min_sharpness=1.0)
    check_quality(dataclasses.replace(GOOD, brightness=20.0, sharpness=5.0), 0.0, lenient)
