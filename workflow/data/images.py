"""Decode one image file into an upright RGB uint8 array, whatever its mode.

Every file that cannot become such an array raises BadImage (a UserError) naming the file and why:
an empty file, a file that is no image, a truncated or corrupt one, or one over MAX_IMAGE_PIXELS.
The download stage decodes every image once with load_rgb, so later stages meet only good files.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from workflow.core.errors import UserError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")

# Decompression-bomb limit, in pixels (width x height), checked from the header before decoding.
# 100 megapixels is twice a 50 MP camera photo, the largest an image-classification competition
# ships, and decodes to 300 MB of RGB per image and per data-loader worker; a tiny PNG or GIF
# claiming more is an attack or a broken file. Pillow's own default (89 MP, hard error at twice
# that) is raised to match, and its warning silenced: this module refuses such images itself, in
# one line naming the file, and the limit is one constant a user with giant scans can raise.
MAX_IMAGE_PIXELS = 100_000_000
Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)

SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N")


class UnsupportedPixels(ValueError):
    """Pixel values no 8-bit conversion can keep faithfully; the message says why."""


class BadImage(UserError):
    """An image file that cannot be decoded; `reason` says why without the path."""

    def __init__(self, path: Path | str, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}; remove or replace the file")


def is_image_name(name: str | Path) -> bool:
    return Path(name).suffix.lower() in IMAGE_EXTENSIONS


def float_to_uint8(array: np.ndarray) -> np.ndarray:
    """Floating-point pixels (Pillow mode F: 32-bit float TIFFs) to 0..255.

    Pillow's own conversion clips, which turns the usual 0..1 range all black. Values in 0..1 are
    scaled by 255; values in 0..255 are kept; anything else (negative, above 255, NaN) has no
    agreed meaning and is refused rather than guessed.
    """
    if not np.isfinite(array).all():
        raise UnsupportedPixels("is a floating-point image with NaN or infinite values; convert it to 8-bit")
    low, high = float(array.min()), float(array.max())
    if low < 0 or high > 255:
        raise UnsupportedPixels(f"is a floating-point image with values from {low:g} to {high:g}; only 0..1 or "
                                "0..255 convert to 8-bit unambiguously, so convert it to 8-bit yourself")
    scale = 255.0 if high <= 1.0 else 1.0
    return np.clip(array * scale + 0.5, 0, 255).astype(np.uint8)


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any PIL mode to RGB: transparency over white, 16-bit scaled down, float scaled (or
    refused with UnsupportedPixels), CMYK converted."""
    if image.mode == "F":
        image = Image.fromarray(float_to_uint8(np.asarray(image, dtype=np.float64)))
    if image.mode in SIXTEEN_BIT_MODES or image.mode == "I":
        array = np.asarray(image, dtype=np.float64)
        # The I;16 modes are 16-bit by definition; mode I (32-bit, from older TIFF/PNG readers)
        # is taken as 16-bit when any value exceeds 8 bits.
        sixteen = image.mode in SIXTEEN_BIT_MODES or array.max() > 255
        peak = 65535.0 if sixteen else 255.0
        image = Image.fromarray(np.clip(array / peak * 255.0 + 0.5, 0, 255).astype(np.uint8))
    if image.mode in ("P", "PA") or (image.mode in ("1", "L", "RGB") and "transparency" in image.info):
        image = image.convert("RGBA")  # a palette or colour key with a transparent entry
    if image.mode in ("RGBA", "LA", "RGBa", "La"):
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image.convert("RGBA"))
    return image.convert("RGB")


def load_rgb(path: Path | str) -> np.ndarray:
    """HxWx3 uint8, EXIF orientation applied. Unreadable files raise BadImage naming the file."""
    try:
        with Image.open(path) as image:
            pixels = image.width * image.height
            if pixels > MAX_IMAGE_PIXELS:
                raise BadImage(path, f"is {image.width}x{image.height} = {pixels:,} pixels, over the "
                                     f"decompression-bomb limit of {MAX_IMAGE_PIXELS:,} "
                                     "(workflow/data/images.py MAX_IMAGE_PIXELS)")
            image = ImageOps.exif_transpose(image)
            return np.asarray(to_rgb(image), dtype=np.uint8)
    except BadImage:
        raise
    except UnsupportedPixels as err:
        raise BadImage(path, str(err)) from None
    except Exception as err:  # a corrupt file can make a decoder raise almost anything; name the file
        raise BadImage(path, _reason(Path(path), err)) from None


def _reason(path: Path, err: Exception) -> str:
    if isinstance(err, FileNotFoundError):
        return "does not exist"
    if path.is_file() and path.stat().st_size == 0:
        return "is an empty file (0 bytes)"
    if isinstance(err, UnidentifiedImageError):
        return "is not an image (Pillow recognises no image format in it)"
    if isinstance(err, Image.DecompressionBombError):
        return f"is too large to decode safely ({err})"
    detail = (str(err).strip().splitlines() or [type(err).__name__])[0]
    return f"cannot be decoded, truncated or corrupt ({detail})"
