"""Safe photo decoding: size and pixel guards, format allow-list, EXIF orientation, colour modes.

Everything here is synthesised in memory with numpy and Pillow; no face, no dlib.
"""

from __future__ import annotations

import hashlib
import io
import struct
import time
import zlib
from typing import Any

import numpy as np
import pytest
from PIL import Image

from dedup.contracts.reasons import RejectReason, RowRejected
from dedup.imaging.decode import DecodedPhoto, check_file_size, decode_photo, to_rgb8
from dedup.settings import ImagingSettings

LIMITS = ImagingSettings()


def encode(image: Image.Image, fmt: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def bomb_png(width: int, height: int) -> bytes:
    """A valid 1-bit greyscale PNG of width x height black pixels, built by streaming zero rows
    through zlib: the pixels are never held in memory, the file is a few hundred kB."""
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1 bit, greyscale
    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + packed bits
    rows_per_block = 256
    block = row * rows_per_block
    compressor = zlib.compressobj(9)
    parts = []
    full, rest = divmod(height, rows_per_block)
    for _ in range(full):
        parts.append(compressor.compress(block))
    parts.append(compressor.compress(row * rest))
    parts.append(compressor.flush())
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", b"".join(parts))
        + _png_chunk(b"IEND", b"")
    )


def gradient_rgb(height: int = 90, width: int = 120) -> np.ndarray:
    """Non-square, with every channel varying differently: any wrong flip or turn shows."""
    yy, xx = np.mgrid[0:height, 0:width]
    red = xx * 255 // (width - 1)
    green = yy * 255 // (height - 1)
    blue = (xx + 2 * yy) % 256
    return np.stack([red, green, blue], axis=2).astype(np.uint8)


def noise_rgb(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def assert_rgb8(photo: DecodedPhoto, data: bytes, height: int, width: int) -> None:
    assert photo.rgb.shape == (height, width, 3)
    assert photo.rgb.dtype == np.uint8
    assert photo.rgb.flags.c_contiguous
    assert (photo.height, photo.width) == (height, width)
    assert photo.sha256 == hashlib.sha256(data).hexdigest()


def reject(data: bytes, limits: ImagingSettings = LIMITS) -> RowRejected:
    with pytest.raises(RowRejected) as caught:
        decode_photo(data, limits)
    return caught.value


# --- size and pixel guards -------------------------------------------------------------------


def test_decompression_bomb_is_refused_on_the_header_quickly() -> None:
    data = bomb_png(30_000, 30_000)
    assert len(data) < 2_000_000  # the bomb is small on disk...
    assert struct.unpack(">II", data[16:24]) == (30_000, 30_000)  # ...and huge in its header

    started = time.perf_counter()
    error = reject(data)
    elapsed = time.perf_counter() - started

    assert error.reason is RejectReason.IMAGE_TOO_LARGE
    assert "900000000" in error.detail  # 30000 x 30000, named in the detail
    assert elapsed < 2.0


def test_pixel_count_above_max_pixels_is_refused_before_decoding() -> None:
    # 8000 x 8000 = 64 M pixels: under Pillow's own bomb limit, over our default 50 M.
    data = bomb_png(8_000, 8_000)
    started = time.perf_counter()
    error = reject(data)
    assert time.perf_counter() - started < 2.0
    assert error.reason is RejectReason.IMAGE_TOO_LARGE
    assert "64000000" in error.detail
    assert str(LIMITS.max_pixels) in error.detail


def test_max_pixels_comes_from_the_settings() -> None:
    data = encode(Image.fromarray(noise_rgb(100, 100)), "PNG")
    assert decode_photo(data, ImagingSettings(max_pixels=10_000)).width == 100
    error = reject(data, ImagingSettings(max_pixels=9_999))
    assert error.reason is RejectReason.IMAGE_TOO_LARGE
    assert "10000" in error.detail


def test_file_over_max_file_bytes_is_too_large() -> None:
    data = encode(Image.fromarray(noise_rgb(100, 100)), "PNG")
    assert decode_photo(data, ImagingSettings(max_file_bytes=len(data))).width == 100
    error = reject(data, ImagingSettings(max_file_bytes=len(data) - 1))
    assert error.reason is RejectReason.IMAGE_TOO_LARGE
    assert str(len(data)) in error.detail


def test_file_size_is_checked_before_anything_is_parsed() -> None:
    # Not an image at all, but too big: the size verdict comes first.
    error = reject(b"x" * 101, ImagingSettings(max_file_bytes=100))
    assert error.reason is RejectReason.IMAGE_TOO_LARGE


def test_check_file_size() -> None:
    limits = ImagingSettings(max_file_bytes=1_000)
    check_file_size(0, limits)
    check_file_size(1_000, limits)
    with pytest.raises(RowRejected) as caught:
        check_file_size(1_001, limits)
    assert caught.value.reason is RejectReason.IMAGE_TOO_LARGE
    assert "1001" in caught.value.detail
    assert "1000" in caught.value.detail


# --- undecodable input ---------------------------------------------------------------------


def _truncated_jpeg() -> bytes:
    data = encode(Image.fromarray(noise_rgb(200, 200)), "JPEG", quality=90)
    return data[: len(data) // 2]


def _gif() -> bytes:
    data = encode(Image.fromarray(noise_rgb(120, 120)).convert("P"), "GIF")
    assert Image.open(io.BytesIO(data)).format == "GIF"  # a valid GIF, refused for its format
    return data


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(_truncated_jpeg, id="truncated-jpeg"),
        pytest.param(lambda: b"enrollment_id,photo_path\nA1,a.jpg\n" * 20, id="text"),
        pytest.param(lambda: np.random.default_rng(7).bytes(5_000), id="random-bytes"),
        pytest.param(lambda: b"", id="empty"),
        pytest.param(_gif, id="gif-not-allowed"),
    ],
)
def test_undecodable_input(make: Any) -> None:
    error = reject(make())
    assert error.reason is RejectReason.UNDECODABLE_IMAGE


def test_image_smaller_than_min_side_is_too_small() -> None:
    limits = ImagingSettings(min_side=80)
    narrow = encode(Image.fromarray(noise_rgb(200, 79)), "PNG")
    error = reject(narrow, limits)
    assert error.reason is RejectReason.IMAGE_TOO_SMALL
    assert "79x200" in error.detail
    just_enough = encode(Image.fromarray(noise_rgb(200, 80)), "PNG")
    assert decode_photo(just_enough, limits).width == 80


# --- orientation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("orientation", "stored_as"),
    [
        # Orientation 6: the viewer turns the stored pixels 90 degrees clockwise.
        (6, Image.Transpose.ROTATE_90),
        # Orientation 8: the viewer turns them 90 degrees counter-clockwise.
        (8, Image.Transpose.ROTATE_270),
        (3, Image.Transpose.ROTATE_180),
    ],
)
def test_exif_orientation_is_applied(orientation: int, stored_as: Image.Transpose) -> None:
    upright = gradient_rgb(90, 120)
    stored = Image.fromarray(upright).transpose(stored_as)
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode(stored, "JPEG", quality=95, exif=exif.tobytes())

    photo = decode_photo(data, LIMITS)

    assert_rgb8(photo, data, 90, 120)
    difference = np.abs(photo.rgb.astype(np.int16) - upright.astype(np.int16)).mean()
    assert difference < 3.0
    # Without the tag the same pixels stay as stored: the tag is what turned them.
    untagged = decode_photo(encode(stored, "JPEG", quality=95), LIMITS)
    assert untagged.rgb.shape[:2] == (stored.height, stored.width)
    if orientation == 3:
        assert np.abs(untagged.rgb.astype(np.int16) - upright.astype(np.int16)).mean() > 30


# --- colour modes ----------------------------------------------------------------------------


def test_cmyk_jpeg() -> None:
    source = gradient_rgb(90, 120)
    data = encode(Image.fromarray(source).convert("CMYK"), "JPEG", quality=95)
    photo = decode_photo(data, LIMITS)
    assert photo.source_mode == "CMYK"
    assert_rgb8(photo, data, 90, 120)
    assert np.abs(photo.rgb.astype(np.int16) - source.astype(np.int16)).mean() < 3.0


def test_greyscale_png() -> None:
    grey = np.tile(np.arange(0, 256, 2, dtype=np.uint8), (90, 1))  # 90 x 128
    data = encode(Image.fromarray(grey, mode="L"), "PNG")
    photo = decode_photo(data, LIMITS)
    assert photo.source_mode == "L"
    assert_rgb8(photo, data, 90, 128)
    for channel in range(3):
        np.testing.assert_array_equal(photo.rgb[:, :, channel], grey)


def test_sixteen_bit_png_is_rescaled_to_eight_bits() -> None:
    values = np.array([0, 257, 32896, 65535, 65280, 128], dtype=np.uint16)
    expected = np.array([0, 1, 128, 255, 254, 0], dtype=np.uint8)
    image16 = np.tile(values, (90, 20))  # 90 x 120
    data = encode(Image.fromarray(image16), "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I")  # really a 16-bit file

    photo = decode_photo(data, LIMITS)

    assert_rgb8(photo, data, 90, 120)
    for channel in range(3):
        np.testing.assert_array_equal(photo.rgb[0, :6, channel], expected)
    # The scale is fixed by the bit depth, not stretched to the photo's own maximum.
    dim = encode(Image.fromarray((image16 // 2).astype(np.uint16)), "PNG")
    np.testing.assert_array_equal(
        decode_photo(dim, LIMITS).rgb[0, :6, 0], np.array([0, 0, 64, 127, 127, 0])
    )


def test_rgba_is_composited_over_white() -> None:
    rgba = np.zeros((90, 120, 4), dtype=np.uint8)
    rgba[:, :40] = (200, 30, 10, 255)  # opaque
    rgba[:, 40:80] = (0, 0, 0, 0)  # fully transparent (black underneath)
    rgba[:, 80:] = (0, 0, 0, 128)  # half-transparent black
    data = encode(Image.fromarray(rgba, mode="RGBA"), "PNG")

    photo = decode_photo(data, LIMITS)

    assert photo.source_mode == "RGBA"
    assert_rgb8(photo, data, 90, 120)
    np.testing.assert_array_equal(photo.rgb[0, 0], (200, 30, 10))
    np.testing.assert_array_equal(photo.rgb[0, 50], (255, 255, 255))
    assert np.all(np.abs(photo.rgb[0, 100].astype(int) - 127) <= 1)


def test_palette_png() -> None:
    source = Image.fromarray(gradient_rgb(90, 120)).quantize(colors=32)
    data = encode(source, "PNG")
    photo = decode_photo(data, LIMITS)
    assert photo.source_mode == "P"
    assert_rgb8(photo, data, 90, 120)
    np.testing.assert_array_equal(photo.rgb, np.asarray(source.convert("RGB")))


def test_palette_png_with_transparency_is_composited_over_white() -> None:
    indices = np.zeros((90, 120), dtype=np.uint8)
    indices[:, 60:] = 1
    image = Image.fromarray(indices, mode="P")
    image.putpalette([10, 20, 30, 0, 0, 0] + [0] * (254 * 3))
    data = encode(image, "PNG", transparency=1)  # index 1 is transparent
    photo = decode_photo(data, LIMITS)
    assert_rgb8(photo, data, 90, 120)
    np.testing.assert_array_equal(photo.rgb[5, 5], (10, 20, 30))
    np.testing.assert_array_equal(photo.rgb[5, 100], (255, 255, 255))


def test_rgb_jpeg_round_trip_and_hash() -> None:
    source = gradient_rgb(90, 120)
    data = encode(Image.fromarray(source), "JPEG", quality=95)
    photo = decode_photo(data, LIMITS)
    assert photo.source_mode == "RGB"
    assert_rgb8(photo, data, 90, 120)
    assert np.abs(photo.rgb.astype(np.int16) - source.astype(np.int16)).mean() < 3.0


def test_float_image_in_unit_range_uses_the_full_8_bit_scale() -> None:
    values = np.linspace(0.0, 1.0, 200 * 200, dtype=np.float32).reshape(200, 200)
    rgb = to_rgb8(Image.fromarray(values))
    assert rgb.shape == (200, 200, 3)
    assert int(rgb.min()) == 0 and int(rgb.max()) == 255
