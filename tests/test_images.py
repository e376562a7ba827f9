"""load_rgb on real image files: every mode becomes upright RGB, every bad file one BadImage line."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from workflow.core.errors import UserError
from workflow.data import images
from workflow.data.images import BadImage, is_image_name, load_rgb


def noise_jpeg(path: Path, side: int = 64) -> Path:
    pixels = np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, quality=90)
    return path


def test_cmyk_jpeg_keeps_its_colours(tmp_path):
    path = tmp_path / "cmyk.jpg"
    image = Image.new("CMYK", (16, 16), (0, 255, 255, 0))  # pure red in CMYK
    image.paste((0, 0, 255, 128), (0, 8, 16, 16))  # yellow at half black: dark olive
    image.save(path, quality=95)
    assert Image.open(path).mode == "CMYK"
    pixels = load_rgb(path).astype(int)
    assert pixels.shape == (16, 16, 3) and pixels.dtype == np.int64
    assert np.abs(pixels[2, 2] - [255, 0, 0]).max() <= 8
    assert np.abs(pixels[13, 13] - [127, 127, 0]).max() <= 8


def test_sixteen_bit_png_is_scaled_to_eight_bits(tmp_path):
    path = tmp_path / "deep.png"
    Image.fromarray(np.array([[0, 32768, 65535]], dtype=np.uint16)).save(path)
    assert Image.open(path).mode.startswith("I;16")
    assert load_rgb(path).tolist() == [[[0, 0, 0], [128, 128, 128], [255, 255, 255]]]

    # A dark 16-bit image stays dark: the mode, not the values, says 16 bits.
    Image.fromarray(np.array([[0, 200, 257]], dtype=np.uint16)).save(path)
    assert load_rgb(path).tolist() == [[[0, 0, 0], [1, 1, 1], [1, 1, 1]]]


def test_rgba_is_composited_over_white(tmp_path):
    path = tmp_path / "alpha.png"
    pixels = np.array([[[255, 0, 0, 0], [0, 0, 255, 255], [0, 0, 0, 128]]], dtype=np.uint8)
    Image.fromarray(pixels, "RGBA").save(path)
    assert load_rgb(path).tolist() == [[[255, 255, 255], [0, 0, 255], [127, 127, 127]]]


def test_palette_with_a_transparent_entry(tmp_path):
    path = tmp_path / "palette.png"
    image = Image.fromarray(np.array([[0, 1, 2]], dtype=np.uint8), "P")
    image.putpalette([0, 0, 0, 10, 200, 30, 250, 240, 5] + [0] * (256 * 3 - 9))
    image.save(path, transparency=0)  # entry 0 (black) is transparent: it must come out white
    assert Image.open(path).mode == "P"
    assert load_rgb(path).tolist() == [[[255, 255, 255], [10, 200, 30], [250, 240, 5]]]

    gif = tmp_path / "palette.gif"
    image.save(gif)  # no transparency this time: entry 0 is black
    assert load_rgb(gif).tolist() == [[[0, 0, 0], [10, 200, 30], [250, 240, 5]]]


@pytest.mark.parametrize("mode, value, expected", [
    ("L", 77, [77, 77, 77]),
    ("LA", (77, 0), [255, 255, 255]),
    ("1", 1, [255, 255, 255]),
])
def test_grayscale_modes(tmp_path, mode, value, expected):
    path = tmp_path / "gray.png"
    Image.new(mode, (3, 2), value).save(path)
    pixels = load_rgb(path)
    assert pixels.shape == (2, 3, 3) and pixels.dtype == np.uint8
    assert (pixels == expected).all()


@pytest.mark.parametrize("orientation, red_side", [(6, "right"), (8, "left")])
def test_exif_rotated_photo_comes_out_upright(tmp_path, orientation, red_side):
    # Stored landscape, 60 wide and 40 high: top half red, bottom half blue. A camera held upright
    # writes Orientation 6 (rotate 90 degrees clockwise to view) or 8 (counter-clockwise).
    stored = np.zeros((40, 60, 3), dtype=np.uint8)
    stored[:20] = (255, 0, 0)
    stored[20:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / "photo.jpg"
    Image.fromarray(stored).save(path, exif=exif, quality=95)
    pixels = load_rgb(path).astype(int)
    assert pixels.shape == (60, 40, 3)  # portrait now
    left, right = pixels[30, 5], pixels[30, 35]
    red, blue = (right, left) if red_side == "right" else (left, right)
    assert np.abs(red - [255, 0, 0]).max() <= 10 and np.abs(blue - [0, 0, 255]).max() <= 10


def test_upper_case_extensions(tmp_path):
    assert is_image_name("IMG_0001.JPG") and is_image_name("a.PnG") and not is_image_name("labels.CSV")
    path = tmp_path / "IMG_0001.JPEG"
    Image.new("RGB", (4, 3), (0, 128, 0)).save(path, format="JPEG")
    assert load_rgb(path).shape == (3, 4, 3)


def one_line_bad_image(path: Path) -> str:
    with pytest.raises(BadImage) as err:
        load_rgb(path)
    assert isinstance(err.value, UserError) and err.value.path == path
    message = str(err.value)
    assert "\n" not in message and message == f"{path}: {err.value.reason}; remove or replace the file"
    return err.value.reason


def test_zero_byte_file(tmp_path):
    path = tmp_path / "empty.jpg"
    path.touch()
    assert one_line_bad_image(path) == "is an empty file (0 bytes)"


def test_non_image_with_an_image_extension(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("id,label\n1,cat\n")
    assert one_line_bad_image(path) == "is not an image (Pillow recognises no image format in it)"


@pytest.mark.parametrize("name", ["cut.jpg", "cut.png"])
def test_truncated_image(tmp_path, name):
    whole = noise_jpeg(tmp_path / "whole.jpg")
    if name.endswith(".png"):
        Image.open(whole).save(whole.with_suffix(".png"))
        whole = whole.with_suffix(".png")
    data = whole.read_bytes()
    path = tmp_path / name
    path.write_bytes(data[: len(data) // 2])
    assert one_line_bad_image(path).startswith("cannot be decoded, truncated or corrupt (")


def test_missing_file(tmp_path):
    assert one_line_bad_image(tmp_path / "gone.jpg") == "does not exist"


def test_image_over_the_pixel_limit_is_refused_before_decoding(tmp_path, monkeypatch):
    assert images.MAX_IMAGE_PIXELS == 100_000_000 and Image.MAX_IMAGE_PIXELS == images.MAX_IMAGE_PIXELS
    path = tmp_path / "bomb.png"
    Image.new("L", (100, 100)).save(path)
    assert load_rgb(path).shape == (100, 100, 3)
    monkeypatch.setattr(images, "MAX_IMAGE_PIXELS", 9_999)  # keeps the test file tiny
    assert one_line_bad_image(path) == ("is 100x100 = 10,000 pixels, over the decompression-bomb limit of "
                                        "9,999 (workflow/data/images.py MAX_IMAGE_PIXELS)")


def test_pillow_own_bomb_error_is_one_line_too(tmp_path, monkeypatch):
    path = tmp_path / "bomb.png"
    Image.new("L", (100, 100)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000)  # Pillow errors at twice its limit
    assert one_line_bad_image(path).startswith("is too large to decode safely (Image size (10000 pixels)")


def float_tiff(path: Path, values) -> Path:
    Image.fromarray(np.asarray(values, dtype=np.float32)).save(path)  # mode F: a 32-bit float TIFF
    assert Image.open(path).mode == "F"
    return path


def test_float_tiff_in_zero_to_one_is_scaled_not_black(tmp_path):
    path = float_tiff(tmp_path / "float.tif", [[0.0, 0.25, 0.5, 1.0]])
    assert load_rgb(path).tolist() == [[[0] * 3, [64] * 3, [128] * 3, [255] * 3]]


def test_float_tiff_in_zero_to_255_keeps_its_values(tmp_path):
    path = float_tiff(tmp_path / "float.tiff", [[0.0, 12.4, 200.0, 255.0]])
    assert load_rgb(path).tolist() == [[[0] * 3, [12] * 3, [200] * 3, [255] * 3]]


@pytest.mark.parametrize("values, reason", [
    ([[-1.0, 0.5]], "is a floating-point image with values from -1 to 0.5; only 0..1 or 0..255"),
    ([[0.0, 4000.0]], "is a floating-point image with values from 0 to 4000; only 0..1 or 0..255"),
    ([[0.0, float("nan")]], "is a floating-point image with NaN or infinite values; convert it to 8-bit"),
])
def test_float_tiff_without_a_known_range_is_refused_by_name(tmp_path, values, reason):
    assert one_line_bad_image(float_tiff(tmp_path / "hdr.tif", values)).startswith(reason)


def test_the_cache_stores_a_float_tiff_with_its_values(tmp_path):
    import pandas as pd

    from workflow.data import cache

    raw = tmp_path / "raw"
    (raw / "train").mkdir(parents=True)
    gradient = np.tile(np.linspace(0, 1, 16, dtype=np.float32), (16, 1))
    float_tiff(raw / "train/grad.tif", gradient)
    pd.DataFrame({"path": ["train/grad.tif"], "label": ["x"]}).to_csv(raw / "train.csv", index=False)
    pd.DataFrame({"id": [], "path": []}).to_csv(raw / "test.csv", index=False)
    cache.build(raw, tmp_path / "cache", size=16, workers=1)
    row = np.load(tmp_path / "cache/images.npy")[0]
    assert np.array_equal(row[..., 0], np.round(gradient * 255).astype(np.uint8))
