"""The demo batch's photo files: crops, re-captures and the hostile files, from the portraits.

Geometry is fixed, not searched for at build time: face boxes and scale factors below were
measured once with dlib's frontal detector (upsample 1, photo downscaled to a 1024 px long
side, as the stage job does), so a build needs no detector and takes a few seconds.
``tests/unit/test_demo_batch.py`` re-measures them with dlib, so a drift is caught.
"""

from __future__ import annotations

import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

Box = tuple[int, int, int, int]  # left, top, right, bottom in the portrait's own pixels

# Measured face boxes (dlib, upsample 1, long side 1024, scaled back). Scores: obama 1.90,
# obama2 1.68, obama3 1.33, biden 1.36, obama_partial_face2 0.92, obama_partial_face 0.91.
FACE_BOXES: dict[str, Box] = {
    "obama.jpg": (378, 158, 625, 405),
    "obama2.jpg": (166, 312, 428, 573),
    "obama3.jpg": (642, 285, 936, 579),
    "biden.jpg": (433, 211, 766, 545),
    "obama_partial_face2.jpg": (383, 154, 590, 361),  # 39 px right of the 551 px frame
    "obama_partial_face.jpg": (-62, 158, 212, 405),  # 62 px left of the frame
}
# Each holds exactly one face scoring >= 0.3 with its box inside the frame: the photos good
# rows are made from. Both obama_partial_face photos also hold one face scoring >= 0.3, but
# 19% and 23% of its box lie outside the photo (quality.max_box_outside_fraction is 0.05), so
# they are quality rejects, not good rows.
USABLE_PORTRAITS = ("obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg")

# obama.jpg resized by this factor onto a 640 x 640 canvas: dlib finds the face with a
# 44 px box (score 2.0), under detection.min_face_px = 60. Factors 40/248 and 48/248 give
# 44 and 53 px, so the row does not sit on a pyramid-level edge.
SMALL_FACE_SCALE = 44 / 247.6
# obama2.jpg blurred with this Gaussian radius: one face, score 0.97, box 315 px wide; the
# Laplacian variance of the face region falls from 278 to 2.
BLUR_RADIUS = 12.0
# obama.jpg at this brightness: one face, score 1.39; face mean grey about 21 (of 255).
DARK_FACTOR = 0.15
BOMB_SIDE = 30_000  # 900 M declared pixels, about 110 KB on disk

_GREY = (128, 128, 128)


def head_and_shoulders(portrait: Image.Image, box: Box) -> Image.Image:
    """The portrait cropped around the face, as a registry capture would frame it."""
    left, top, right, bottom = box
    width = right - left
    crop = (left - 0.8 * width, top - 0.8 * width, right + 0.8 * width, bottom + 1.6 * width)
    return portrait.crop(_clip(crop, portrait.size))


class PhotoMaker:
    """Writes the photo files; each method returns the path relative to the batch folder."""

    def __init__(self, portraits: Path, photos: Path, rng: np.random.Generator) -> None:
        self.portraits = portraits
        self.photos = photos
        self.rng = rng

    def rgb(self, name: str) -> Image.Image:
        with Image.open(self.portraits / name) as image:
            return image.convert("RGB")

    def copy(self, name: str, target: str | None = None) -> str:
        shutil.copyfile(self.portraits / name, self.photos / (target or name))
        return f"photos/{target or name}"

    def save(self, image: Image.Image, name: str, **params: object) -> str:
        fmt = "PNG" if name.endswith(".png") else "JPEG"
        defaults: dict[str, object] = {"quality": 90} if fmt == "JPEG" else {}
        image.save(self.photos / name, fmt, **{**defaults, **params})
        return f"photos/{name}"

    def directory(self, name: str) -> str:
        """A folder where a photo should be: looked at, never opened."""
        (self.photos / name).mkdir()
        return f"photos/{name}"

    def write_bytes(self, data: bytes, name: str) -> str:
        (self.photos / name).write_bytes(data)
        return f"photos/{name}"

    def recapture(self, name: str, index: int) -> str:
        """Crop keeping the face, tilt up to 8 degrees, change exposure and JPEG quality."""
        angle = float(self.rng.uniform(-8.0, 8.0))
        brightness = float(self.rng.uniform(0.8, 1.2))
        quality = int(self.rng.integers(40, 96))
        margins = self.rng.uniform(0.5, 1.2, size=4) * np.array([1.0, 1.0, 1.0, 1.5])
        long_side = int(self.rng.integers(640, 1025))
        image = self.rgb(name)
        left, top, right, bottom = FACE_BOXES[name]
        width = right - left
        centre = ((left + right) / 2, (top + bottom) / 2)
        tilted = image.rotate(angle, Image.Resampling.BICUBIC, center=centre, fillcolor=_GREY)
        ml, mt, mr, mb = (float(m) * width for m in margins)
        shot = tilted.crop(_clip((left - ml, top - mt, right + mr, bottom + mb), image.size))
        scale = long_side / max(shot.size)
        if scale < 1.0:
            size = (round(shot.width * scale), round(shot.height * scale))
            shot = shot.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
        shot = ImageEnhance.Brightness(shot).enhance(brightness)
        return self.save(shot, f"{Path(name).stem}-r{index}.jpg", quality=quality)

    def crop(self, name: str) -> Image.Image:
        return head_and_shoulders(self.rgb(name), FACE_BOXES[name])

    def exif_rotated(self, name: str) -> str:
        """Pixels stored turned 90 degrees left; Orientation 6 tells a viewer to turn them back."""
        exif = Image.Exif()
        exif[0x0112] = 6
        stored = self.crop(name).transpose(Image.Transpose.ROTATE_90)
        return self.save(stored, f"exif6-{Path(name).stem}.jpg", exif=exif.tobytes())

    def gray16(self, name: str) -> str:
        grey = np.asarray(self.crop(name).convert("L"), dtype=np.uint16) * np.uint16(257)
        return self.save(Image.fromarray(grey), f"gray16-{Path(name).stem}.png")

    def no_face(self) -> str:
        ys, xs = np.mgrid[0:480, 0:640].astype(np.float64)
        base = np.stack([60 + 0.2 * xs, 80 + 0.25 * ys, 200 - 0.15 * xs], axis=-1)
        noisy = base + self.rng.normal(0.0, 12.0, size=base.shape)
        pixels = np.clip(np.rint(noisy), 0, 255).astype(np.uint8)
        return self.save(Image.fromarray(pixels), "no-face.jpg")

    def two_faces(self) -> str:
        """obama.jpg and the top of biden.jpg, 600 px high: dlib boxes 130 and 156 px wide."""
        left = self.rgb("obama.jpg")
        right = self.rgb("biden.jpg").crop((0, 0, 970, 1100))
        parts = [p.resize((round(p.width * 600 / p.height), 600)) for p in (left, right)]
        canvas = Image.new("RGB", (parts[0].width + parts[1].width, 600), _GREY)
        canvas.paste(parts[0], (0, 0))
        canvas.paste(parts[1], (parts[0].width, 0))
        return self.save(canvas, "two-faces.jpg")

    def link_outside(self, out_dir: Path) -> str:
        """A symlink in photos/ to a real portrait in ``<out_dir>-outside/`` (relative link)."""
        outside = out_dir.parent / f"{out_dir.name}-outside"
        outside.mkdir(exist_ok=True)
        shutil.copyfile(self.portraits / "obama.jpg", outside / "obama.jpg")
        (self.photos / "linked-out.jpg").symlink_to(Path("..", "..", outside.name, "obama.jpg"))
        return "photos/linked-out.jpg"

    def tiny(self) -> str:
        face = self.rgb("obama.jpg").crop(FACE_BOXES["obama.jpg"])
        return self.save(face.resize((40, 40), Image.Resampling.LANCZOS), "tiny.jpg")

    def blurred(self) -> str:
        blurred = self.rgb("obama2.jpg").filter(ImageFilter.GaussianBlur(BLUR_RADIUS))
        return self.save(blurred, "blurred.jpg")

    def dark(self) -> str:
        dark = ImageEnhance.Brightness(self.rgb("obama.jpg")).enhance(DARK_FACTOR)
        return self.save(dark, "dark.jpg", quality=95)

    def small_face(self) -> str:
        image = self.rgb("obama.jpg")
        size = (round(image.width * SMALL_FACE_SCALE), round(image.height * SMALL_FACE_SCALE))
        small = image.resize(size, Image.Resampling.LANCZOS)
        canvas = Image.new("RGB", (640, 640), (200, 200, 200))
        canvas.paste(small, ((640 - small.width) // 2, (640 - small.height) // 2))
        return self.save(canvas, "small-face.jpg")


def png_bomb(side: int) -> bytes:
    """A valid side x side 1-bit greyscale PNG of zeros, compressed row block by row block.

    The pixels are never held in memory: at 30000 px this declares 900 M pixels (112 MB of
    raw rows) in about 110 KB, which is what a decompression-bomb guard has to refuse.
    """

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    row = bytes(1 + (side + 7) // 8)  # filter byte 0, then packed bits
    compressor = zlib.compressobj(9)
    parts: list[bytes] = []
    done = 0
    while done < side:
        rows = min(256, side - done)
        parts.append(compressor.compress(row * rows))
        done += rows
    parts.append(compressor.flush())
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", b"".join(parts))
        + chunk(b"IEND", b"")
    )


def _clip(box: tuple[float, float, float, float], size: tuple[int, int]) -> Box:
    left, top, right, bottom = box
    return (
        max(0, round(left)),
        max(0, round(top)),
        min(size[0], round(right)),
        min(size[1], round(bottom)),
    )
