"""Safe photo decoding: size and pixel limits before decode, EXIF orientation, colour modes.

Registry photos come from many capture devices and some files are hostile. The rules:
the file size is checked before reading, the pixel count on the header before decoding
(a decompression bomb never reaches the decoder), only still-image formats are opened, and
every image leaves here as upright 8-bit RGB.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageOps, UnidentifiedImageError

from dedup.contracts.reasons import RejectReason, RowRejected
from dedup.settings import ImagingSettings

# Still-image formats a capture device produces. Anything else is refused unopened.
ALLOWED_FORMATS = ("JPEG", "PNG", "TIFF", "WEBP", "BMP", "JPEG2000")

RGBImage = NDArray[np.uint8]


@dataclass(frozen=True)
class DecodedPhoto:
    rgb: RGBImage  # (height, width, 3), upright
    sha256: str
    source_mode: str

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])


def check_file_size(size: int, limits: ImagingSettings) -> None:
    if size > limits.max_file_bytes:
        raise RowRejected(
            RejectReason.IMAGE_TOO_LARGE,
            f"file is {size} bytes; the limit is {limits.max_file_bytes}",
        )


def decode_photo(data: bytes, limits: ImagingSettings) -> DecodedPhoto:
    """Decode photo bytes into upright 8-bit RGB, or raise ``RowRejected`` with the reason."""
    check_file_size(len(data), limits)
    digest = hashlib.sha256(data).hexdigest()
    try:
        with warnings.catch_warnings():
            # Pillow warns (and past 2x its own limit raises) on huge images; we decide below.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except Image.DecompressionBombError as exc:
        raise RowRejected(RejectReason.IMAGE_TOO_LARGE, f"pixel count refused: {exc}") from exc
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise RowRejected(
            RejectReason.UNDECODABLE_IMAGE, f"not a supported image ({type(exc).__name__})"
        ) from exc
    with image:
        width, height = image.size
        if width * height > limits.max_pixels:
            raise RowRejected(
                RejectReason.IMAGE_TOO_LARGE,
                f"{width}x{height} = {width * height} pixels; the limit is {limits.max_pixels}",
            )
        source_mode = image.mode
        try:
            image.load()
            upright = _apply_orientation(image)
            rgb = to_rgb8(upright)
        except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as exc:
            raise RowRejected(
                RejectReason.UNDECODABLE_IMAGE, f"decoding failed: {exc}"[:300]
            ) from exc
    if min(rgb.shape[0], rgb.shape[1]) < limits.min_side:
        raise RowRejected(
            RejectReason.IMAGE_TOO_SMALL,
            f"{rgb.shape[1]}x{rgb.shape[0]}; the short side must be at least {limits.min_side}",
        )
    return DecodedPhoto(rgb=rgb, sha256=digest, source_mode=source_mode)


def _apply_orientation(image: Image.Image) -> Image.Image:
    """Rotate as the EXIF Orientation tag says. A malformed EXIF block is ignored, not fatal."""
    try:
        transposed = ImageOps.exif_transpose(image)
    except (ValueError, TypeError, KeyError, SyntaxError, OSError):
        return image
    return transposed if transposed is not None else image


def _full_scale(mode: str, brightest: float) -> float:
    """The value that maps to 255: the container's range for 16-bit, else what the data says.

    16-bit files use their full range. 32-bit integer and float images carry no range of their
    own: floats at most 1.0 are read as 0..1 (as scientific and HDR tools write them), values
    at most 255 as 8-bit, and anything larger is scaled by its brightest pixel.
    """
    if mode.startswith("I;16"):
        return 65535.0
    if mode == "F" and brightest <= 1.0:
        return 1.0
    return 255.0 if brightest <= 255.0 else brightest


def to_rgb8(image: Image.Image) -> RGBImage:
    """Any Pillow mode to 8-bit RGB: high bit depths rescaled, alpha laid over white."""
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        peak = _full_scale(mode, float(values.max(initial=0.0)))
        gray = np.clip(np.rint(values * (255.0 / peak)), 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, rgba)
    rgb = np.asarray(image.convert("RGB"), dtype=np.uint8)
    return np.ascontiguousarray(rgb)
