"""Detection, landmarks, alignment and the whole per-photo stage, with real dlib on the real
test portraits of face_recognition 1.3.0 (fetched once by ``fetch_portraits``; nothing is
copied into the repository). Every derived image is synthesised in memory."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from dedup.contracts.reasons import RejectReason, RowRejected
from dedup.errors import ConfigError
from dedup.imaging.align import alignment_template, eye_centres, similarity_transform
from dedup.imaging.decode import DecodedPhoto, decode_photo
from dedup.imaging.detect import Box, Detection, Face, face_analyser, select_single_face
from dedup.intake.photo_to_face import StagedFace, stage_photo
from dedup.settings import DetectionSettings, Settings, load_settings

# 32bit.png is obama2.jpg saved as RGBA: the alpha path of decoding on a real photo.
USABLE = ("obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg", "32bit.png")

# The standard ArcFace 112x112 reference: image-left eye centre, image-right eye centre, nose.
ARCFACE_REF = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366]])


# --- fixtures: everything expensive is done once per session --------------------------------


@pytest.fixture(scope="session")
def portrait_dir() -> Path:
    from dedup.demo.portraits import fetch_portraits

    return fetch_portraits()


@pytest.fixture(scope="session")
def stage_settings() -> Settings:
    return load_settings()


@pytest.fixture(scope="session")
def photo_bytes(portrait_dir: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in portrait_dir.iterdir()}


@pytest.fixture(scope="session")
def photos(photo_bytes: dict[str, bytes], stage_settings: Settings) -> dict[str, DecodedPhoto]:
    return {name: decode_photo(data, stage_settings.imaging) for name, data in photo_bytes.items()}


@pytest.fixture(scope="session")
def faces(photos: dict[str, DecodedPhoto], stage_settings: Settings) -> dict[str, Face]:
    """The single usable face of obama.jpg and biden.jpg, detected once."""
    analyser = face_analyser()
    found = {}
    for name in ("obama.jpg", "biden.jpg"):
        rgb = photos[name].rgb
        detections = analyser.detect(
            rgb, stage_settings.detection, stage_settings.imaging.detection_max_side
        )
        chosen = select_single_face(detections, stage_settings.detection)
        found[name] = analyser.landmarks(rgb, chosen)
    return found


def jpeg(rgb: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def png(rgb: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def stage_reject(data: bytes, settings: Settings) -> RowRejected:
    with pytest.raises(RowRejected) as caught:
        stage_photo(data, settings)
    return caught.value


# --- the analyser ----------------------------------------------------------------------------


def test_face_analyser_is_loaded_once_per_process() -> None:
    assert face_analyser() is face_analyser()


@pytest.mark.parametrize("name", ["obama.jpg", "biden.jpg"])
def test_one_usable_face_with_landmarks_inside_it(
    name: str, photos: dict[str, DecodedPhoto], faces: dict[str, Face], stage_settings: Settings
) -> None:
    rgb = photos[name].rgb
    detections = face_analyser().detect(
        rgb, stage_settings.detection, stage_settings.imaging.detection_max_side
    )
    usable = [d for d in detections if d.box.width >= stage_settings.detection.min_face_px]
    assert len(usable) == 1

    face = faces[name]
    box = face.box
    assert face.landmarks.shape == (5, 2)
    assert face.landmarks.dtype == np.float32
    assert np.all((face.landmarks[:, 0] >= box.left) & (face.landmarks[:, 0] < box.right))
    assert np.all((face.landmarks[:, 1] >= box.top) & (face.landmarks[:, 1] < box.bottom))
    # dlib's order: points 0, 1 are the eye on the image's right, 2, 3 the one on its left,
    # the nose base lies below both eyes.
    assert face.landmarks[:2, 0].min() > face.landmarks[2:4, 0].max()
    assert face.landmarks[4, 1] > face.landmarks[:4, 1].max()
    assert box.width >= 150  # a registry portrait: the face is large

    dlib_chip = alignment_template("dlib-150").cut(rgb, face)
    assert dlib_chip.shape == (150, 150, 3)
    assert dlib_chip.dtype == np.uint8
    arcface_chip = alignment_template("arcface-112").cut(rgb, face)
    assert arcface_chip.shape == (112, 112, 3)
    assert arcface_chip.dtype == np.uint8
    assert arcface_chip.std() > 10  # a picture, not an empty frame


def test_detection_on_a_downscaled_copy_reports_full_resolution_boxes(
    photos: dict[str, DecodedPhoto], faces: dict[str, Face]
) -> None:
    # biden.jpg is 2204 px tall: detection runs on a copy scaled to 1024 on its long side.
    rgb = photos["biden.jpg"].rgb
    assert max(rgb.shape[:2]) > 1024
    full = face_analyser().detect(rgb, DetectionSettings(upsample=0), max_side=4096)
    assert len(full) == 1
    reference, scaled = full[0].box, faces["biden.jpg"].box
    tolerance = 0.1 * reference.width
    assert abs(scaled.left - reference.left) < tolerance
    assert abs(scaled.right - reference.right) < tolerance
    assert abs(scaled.top - reference.top) < tolerance
    assert abs(scaled.bottom - reference.bottom) < tolerance


# --- select_single_face ----------------------------------------------------------------------


def detection(width: int, score: float = 1.0, left: int = 0) -> Detection:
    return Detection(box=Box(left=left, top=0, right=left + width, bottom=width), score=score)


SELECT = DetectionSettings(min_face_px=60)


def test_select_no_detection_is_no_face() -> None:
    with pytest.raises(RowRejected) as caught:
        select_single_face([], SELECT)
    assert caught.value.reason is RejectReason.NO_FACE


def test_select_two_wide_faces_is_several_faces() -> None:
    with pytest.raises(RowRejected) as caught:
        select_single_face([detection(200, 1.5), detection(60, 0.4, left=300)], SELECT)
    assert caught.value.reason is RejectReason.SEVERAL_FACES
    assert "200" in caught.value.detail
    assert "60" in caught.value.detail


def test_select_only_narrow_faces_is_face_too_small() -> None:
    with pytest.raises(RowRejected) as caught:
        select_single_face([detection(45, 2.0), detection(59, 0.5, left=100)], SELECT)
    assert caught.value.reason is RejectReason.FACE_TOO_SMALL
    assert "59" in caught.value.detail  # the widest one is reported
    assert "60" in caught.value.detail


def test_select_keeps_the_wide_face_and_ignores_a_narrow_one() -> None:
    wide = detection(180, score=0.8)
    narrow = detection(40, score=2.5, left=400)  # scores higher: a face on a poster
    assert select_single_face([narrow, wide], SELECT) is wide
    assert select_single_face([wide, narrow], SELECT) is wide
    assert select_single_face([wide], SELECT) is wide


# --- stage_photo on synthetic scenes built from the portraits --------------------------------


def test_two_people_side_by_side_are_several_faces(
    photos: dict[str, DecodedPhoto], stage_settings: Settings
) -> None:
    obama = Image.fromarray(photos["obama.jpg"].rgb)
    biden = Image.fromarray(photos["biden.jpg"].rgb)
    canvas = Image.new("RGB", (obama.width + biden.width, max(obama.height, biden.height)), "white")
    canvas.paste(obama, (0, 0))
    canvas.paste(biden, (obama.width, 0))
    canvas = canvas.resize((canvas.width // 2, canvas.height // 2), Image.Resampling.BOX)

    error = stage_reject(png(np.asarray(canvas)), stage_settings)

    assert error.reason is RejectReason.SEVERAL_FACES
    assert "2 faces" in error.detail


def test_a_photo_without_a_face_is_no_face(stage_settings: Settings) -> None:
    ramp = np.linspace(0, 255, 640, dtype=np.float32)
    gradient = np.empty((480, 640, 3), dtype=np.uint8)
    gradient[:, :, 0] = ramp.astype(np.uint8)[None, :]
    gradient[:, :, 1] = np.linspace(30, 220, 480).astype(np.uint8)[:, None]
    gradient[:, :, 2] = 128
    assert stage_reject(png(gradient), stage_settings).reason is RejectReason.NO_FACE
    blank = np.full((480, 640, 3), 200, dtype=np.uint8)
    assert stage_reject(png(blank), stage_settings).reason is RejectReason.NO_FACE


def test_a_distant_face_is_too_small(
    photos: dict[str, DecodedPhoto], faces: dict[str, Face], stage_settings: Settings
) -> None:
    # obama.jpg scaled so that its face is about 45 px wide, on a 640 x 640 canvas.
    scale = 45 / faces["obama.jpg"].box.width
    obama = Image.fromarray(photos["obama.jpg"].rgb)
    small = obama.resize(
        (round(obama.width * scale), round(obama.height * scale)), Image.Resampling.LANCZOS
    )
    canvas = Image.new("RGB", (640, 640), (128, 128, 128))
    canvas.paste(small, (240, 200))
    rgb = np.asarray(canvas)

    # The detector still finds the face (with one upsampling step), but it is too narrow.
    found = face_analyser().detect(
        rgb, stage_settings.detection, stage_settings.imaging.detection_max_side
    )
    assert len(found) == 1
    assert 30 <= found[0].box.width < stage_settings.detection.min_face_px

    error = stage_reject(png(rgb), stage_settings)
    assert error.reason is RejectReason.FACE_TOO_SMALL
    assert str(found[0].box.width) in error.detail


# --- stage_photo on the real portraits -------------------------------------------------------


@pytest.mark.parametrize("name", USABLE)
def test_the_usable_portraits_are_staged(
    name: str,
    photo_bytes: dict[str, bytes],
    photos: dict[str, DecodedPhoto],
    stage_settings: Settings,
) -> None:
    staged = stage_photo(photo_bytes[name], stage_settings)

    assert isinstance(staged, StagedFace)
    assert staged.alignment == "dlib-150"
    assert staged.photo_sha256 == photos[name].sha256
    assert (staged.image_width, staged.image_height) == (photos[name].width, photos[name].height)
    assert len(staged.landmarks) == 10
    assert staged.box.outside_fraction(staged.image_width, staged.image_height) == 0.0
    chip = Image.open(io.BytesIO(staged.chip_png))
    assert (chip.format, chip.size, chip.mode) == ("PNG", (150, 150), "RGB")
    q = staged.quality
    assert q.sharpness >= stage_settings.quality.min_sharpness
    assert q.inter_eye_px >= stage_settings.quality.min_inter_eye_px
    row = staged.as_row()
    assert row["box"]["right"] - row["box"]["left"] == staged.box.width


@pytest.mark.parametrize("name", ["obama_partial_face.jpg", "obama_partial_face2.jpg"])
def test_a_face_cut_by_the_frame_is_rejected(
    name: str, photo_bytes: dict[str, bytes], stage_settings: Settings
) -> None:
    error = stage_reject(photo_bytes[name], stage_settings)
    assert error.reason is RejectReason.QUALITY_BELOW_THRESHOLD
    assert "face_outside_photo" in error.detail


def test_a_blurred_portrait_is_rejected_for_sharpness(
    photos: dict[str, DecodedPhoto], stage_settings: Settings
) -> None:
    soft = Image.fromarray(photos["obama.jpg"].rgb).filter(ImageFilter.GaussianBlur(4))
    error = stage_reject(jpeg(np.asarray(soft)), stage_settings)
    assert error.reason is RejectReason.QUALITY_BELOW_THRESHOLD
    assert "sharpness" in error.detail
    assert "brightness" not in error.detail


def test_a_dark_portrait_is_rejected_for_brightness(
    photos: dict[str, DecodedPhoto], stage_settings: Settings
) -> None:
    dark = (photos["obama.jpg"].rgb.astype(np.float32) * 0.15).round().astype(np.uint8)
    error = stage_reject(jpeg(dark), stage_settings)
    assert error.reason is RejectReason.QUALITY_BELOW_THRESHOLD
    assert "brightness" in error.detail
    assert "sharpness" not in error.detail  # the sharpness measure ignores exposure


def test_the_arcface_template_is_used_when_the_model_asks_for_it(
    photo_bytes: dict[str, bytes],
) -> None:
    settings = load_settings(
        overrides={
            "model": "arcface",
            "models": {"arcface": {"alignment": "arcface-112", "dimension": 512}},
        }
    )
    staged = stage_photo(photo_bytes["obama.jpg"], settings)
    assert staged.alignment == "arcface-112"
    assert Image.open(io.BytesIO(staged.chip_png)).size == (112, 112)


def test_unknown_alignment_template_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="arcface-112"):
        alignment_template("no-such-template")


# --- alignment geometry ----------------------------------------------------------------------


def test_similarity_transform_recovers_a_known_transform() -> None:
    rng = np.random.default_rng(42)
    src = rng.uniform(0, 500, (6, 2))
    scale, angle, shift = 0.37, math.radians(-23.0), np.array([41.5, -12.25])
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    dst = scale * src @ rotation.T + shift

    matrix = similarity_transform(src, dst)

    assert matrix.shape == (2, 3)
    np.testing.assert_allclose(matrix[:, :2], scale * rotation, atol=1e-9)
    np.testing.assert_allclose(matrix[:, 2], shift, atol=1e-7)
    np.testing.assert_allclose(np.c_[src, np.ones(6)] @ matrix.T, dst, atol=1e-7)


def test_similarity_transform_of_three_landmarks() -> None:
    # The three points the arcface chip uses, from a face turned by 12 degrees.
    src = np.array([[310.0, 220.0], [420.0, 240.0], [360.0, 300.0]])
    angle = math.radians(12.0)
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    dst = 2.5 * src @ rotation.T + np.array([-100.0, 7.0])
    matrix = similarity_transform(src, dst)
    np.testing.assert_allclose(np.c_[src, np.ones(3)] @ matrix.T, dst, atol=1e-7)


def _arcface_forward(face: Face) -> np.ndarray:
    left, right = eye_centres(face.landmarks)
    src = np.array([left, right, face.landmarks[4].astype(np.float64)])
    return similarity_transform(src, ARCFACE_REF)


@pytest.mark.parametrize("name", ["obama.jpg", "biden.jpg"])
def test_arcface_chip_puts_the_eyes_on_the_reference_points(
    name: str, photos: dict[str, DecodedPhoto], faces: dict[str, Face], stage_settings: Settings
) -> None:
    rgb, face = photos[name].rgb, faces[name]
    chip = alignment_template("arcface-112").cut(rgb, face)
    forward = _arcface_forward(face)

    # 1. The fitted transform takes the eye centres (and nose base) near the reference.
    left, right = eye_centres(face.landmarks)
    src = np.array([left, right, face.landmarks[4].astype(np.float64)])
    mapped = np.c_[src, np.ones(3)] @ forward.T
    assert np.abs(mapped - ARCFACE_REF).max() < 4.0

    # 2. The chip really is the photo seen through that transform (not its inverse): sample
    #    the photo at every chip pixel's pre-image and compare.
    inverse = np.linalg.inv(np.vstack([forward, [0.0, 0.0, 1.0]]))[:2]
    ys, xs = np.mgrid[0:112, 0:112]
    grid = np.stack([xs.ravel(), ys.ravel(), np.ones(112 * 112)])
    px, py = inverse @ grid
    xi = np.clip(np.rint(px).astype(int), 0, rgb.shape[1] - 1)
    yi = np.clip(np.rint(py).astype(int), 0, rgb.shape[0] - 1)
    expected = rgb[yi, xi].reshape(112, 112, 3)
    assert np.abs(expected.astype(np.int16) - chip.astype(np.int16)).mean() < 20

    # 3. Independently: landmarks found on the chip itself (enlarged 3x on a grey margin so
    #    that the HOG detector can see it) sit on the reference points.
    margin, zoom = 56, 3
    canvas = Image.new("RGB", (112 + 2 * margin,) * 2, (128, 128, 128))
    canvas.paste(Image.fromarray(chip), (margin, margin))
    big = np.asarray(canvas.resize((canvas.width * zoom,) * 2, Image.Resampling.BICUBIC))
    analyser = face_analyser()
    found = analyser.detect(big, stage_settings.detection, max_side=big.shape[0])
    assert len(found) == 1
    on_chip = analyser.landmarks(big, found[0]).landmarks.astype(np.float64)
    on_chip = (on_chip + 0.5) / zoom - 0.5 - margin
    chip_left, chip_right = eye_centres(on_chip.astype(np.float32))
    assert np.abs(chip_left - ARCFACE_REF[0]).max() < 4.0
    assert np.abs(chip_right - ARCFACE_REF[1]).max() < 4.0


def test_eye_centres_follow_dlib_order() -> None:
    landmarks = np.array([[90, 10], [70, 12], [10, 20], [30, 22], [50, 60]], dtype=np.float32)
    image_left, image_right = eye_centres(landmarks)
    np.testing.assert_allclose(image_left, [20.0, 21.0])
    np.testing.assert_allclose(image_right, [80.0, 11.0])


# --- Box -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("box", "expected"),
    [
        (Box(left=10, top=10, right=110, bottom=110), 0.0),
        (Box(left=0, top=0, right=200, bottom=100), 0.0),
        (Box(left=-50, top=20, right=50, bottom=120), 0.5),  # half off the left edge
        (Box(left=150, top=20, right=250, bottom=120), 0.5),  # half off the right edge
        (Box(left=20, top=-25, right=120, bottom=75), 0.25),  # a quarter off the top
        (Box(left=-50, top=-50, right=50, bottom=50), 0.75),  # a corner
        (Box(left=300, top=20, right=400, bottom=120), 1.0),  # entirely outside
        (Box(left=-120, top=-120, right=-20, bottom=-20), 1.0),
    ],
)
def test_box_outside_fraction(box: Box, expected: float) -> None:
    assert box.outside_fraction(200, 150) == pytest.approx(expected)


def test_box_width() -> None:
    assert Box(left=-5, top=0, right=95, bottom=10).width == 100
