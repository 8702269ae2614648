"""Loading and preprocessing photos: every kind of bad file a marketplace sends, made in code.

No real photo is used here; nothing needs torch or onnxruntime.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from prodcat.errors import ConfigError, ProdcatError
from prodcat.image import (
    ImageError,
    PreprocessConfig,
    crop_white_borders,
    load_image,
    normalize,
    pad_to_square,
    preprocess_image,
    try_load_image,
)
from prodcat.image.preprocess import white_border_box

RED = (220, 30, 30)


def noisy_rgb(size=(64, 48), seed=0) -> Image.Image:
    """Random pixels: compress badly, so a truncated file loses real scan data."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def jpeg_bytes(image: Image.Image, **kwargs) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="JPEG", **kwargs)
    return buf.getvalue()


def png_bytes(image: Image.Image, **kwargs) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG", **kwargs)
    return buf.getvalue()


def png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares ``width × height`` (a decompression bomb's calling card)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def jpeg_declaring(width: int, height: int) -> bytes:
    """A small real JPEG whose frame header (SOF0) is rewritten to claim ``width × height``."""
    data = bytearray(jpeg_bytes(noisy_rgb((32, 32))))
    at = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, at + 5, height, width)
    return bytes(data)


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


# --- good files ----------------------------------------------------------------------------------


def test_rgb_jpeg_from_path_and_bytes(tmp_path):
    image = Image.new("RGB", (40, 30), RED)
    path = write(tmp_path, "a.jpg", jpeg_bytes(image, quality=95))
    for source in (path, str(path), path.read_bytes()):
        loaded = load_image(source)
        assert loaded.mode == "RGB" and loaded.size == (40, 30)
        assert np.abs(np.asarray(loaded, int) - RED).max() < 12


def test_png_with_alpha_is_composited_on_white(tmp_path):
    image = Image.new("RGBA", (20, 20), (0, 0, 0, 0))  # transparent black
    ImageDraw.Draw(image).rectangle([5, 5, 14, 14], fill=(*RED, 255))
    loaded = load_image(write(tmp_path, "alpha.png", png_bytes(image)))
    pixels = np.asarray(loaded)
    assert loaded.mode == "RGB"
    assert tuple(pixels[0, 0]) == (255, 255, 255)  # not black
    assert tuple(pixels[10, 10]) == RED


def test_palette_with_transparency_and_la(tmp_path):
    palette = Image.new("P", (10, 10), 0)
    palette.putpalette([0, 0, 0, *RED] + [0] * 762)
    ImageDraw.Draw(palette).rectangle([3, 3, 6, 6], fill=1)
    loaded = load_image(png_bytes(palette, transparency=0))
    assert tuple(np.asarray(loaded)[0, 0]) == (255, 255, 255)
    assert tuple(np.asarray(loaded)[4, 4]) == RED
    la = Image.new("LA", (8, 8), (0, 0))
    assert tuple(np.asarray(load_image(png_bytes(la)))[0, 0]) == (255, 255, 255)


def test_cmyk_greyscale_and_16_bit(tmp_path):
    cmyk = Image.new("RGB", (16, 16), RED).convert("CMYK")
    loaded = load_image(jpeg_bytes(cmyk, quality=95))
    assert loaded.mode == "RGB"
    assert np.abs(np.asarray(loaded, int)[8, 8] - RED).max() < 40

    grey = load_image(png_bytes(Image.new("L", (8, 8), 100)))
    assert grey.mode == "RGB" and tuple(np.asarray(grey)[0, 0]) == (100, 100, 100)

    # A 16-bit greyscale PNG at half scale: PIL's own convert would clip it to white.
    deep = Image.fromarray(np.full((8, 8), 32768, dtype=np.uint16))
    loaded = load_image(png_bytes(deep))
    assert loaded.mode == "RGB" and 100 < np.asarray(loaded)[0, 0, 0] < 160


def test_one_pixel_image_loads_and_preprocesses():
    loaded = load_image(png_bytes(Image.new("RGB", (1, 1), RED)))
    assert loaded.size == (1, 1)
    out = preprocess_image(loaded, PreprocessConfig(size=32))
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8
    white = preprocess_image(Image.new("RGB", (1, 1), (255, 255, 255)), PreprocessConfig(size=32))
    assert (white == 255).all()


def test_exif_orientation_is_applied():
    image = Image.new("RGB", (40, 20), RED)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    loaded = load_image(jpeg_bytes(image, exif=exif.tobytes()))
    assert loaded.size == (20, 40)


def test_malformed_exif_does_not_fail():
    image = Image.new("RGB", (10, 10), RED)
    loaded = load_image(jpeg_bytes(image, exif=b"Exif\x00\x00garbage-not-tiff"))
    assert loaded.size == (10, 10)


# --- bad files -----------------------------------------------------------------------------------


def test_missing_inputs():
    for source in (None, float("nan"), "", "   "):
        with pytest.raises(ImageError) as err:
            load_image(source)
        assert err.value.kind == "no image"


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(ImageError, match="not found") as err:
        load_image(tmp_path / "nope.jpg")
    assert err.value.kind == "not found"
    with pytest.raises(ImageError, match="folder"):
        load_image(tmp_path)


def test_not_an_image_named_jpg(tmp_path):
    path = write(tmp_path, "page.jpg", b"<html><body>404 Not Found</body></html>")
    with pytest.raises(ImageError, match="not an image") as err:
        load_image(path)
    assert err.value.kind == "not an image"
    assert isinstance(err.value, ProdcatError)  # the CLI reports it as one line
    assert "page.jpg" in str(err.value)


def test_empty_and_random_bytes(tmp_path):
    for data in (b"", np.random.default_rng(1).bytes(500)):
        image, reason = try_load_image(write(tmp_path, "x.jpg", data))
        assert image is None and reason


def test_truncated_jpeg(tmp_path):
    data = jpeg_bytes(noisy_rgb((128, 96)), quality=90)
    path = write(tmp_path, "cut.jpg", data[: len(data) // 2])
    with pytest.raises(ImageError, match="corrupt or truncated") as err:
        load_image(path)
    assert err.value.kind == "corrupt"


def test_corrupt_png_body(tmp_path):
    data = bytearray(png_bytes(noisy_rgb((32, 32))))
    data[60:80] = b"\x00" * 20  # inside the IDAT stream: CRC and zlib data break
    image, reason = try_load_image(bytes(data))
    assert image is None and "corrupt" in reason


def test_header_declaring_a_huge_png_is_refused_without_decoding():
    with pytest.raises(ImageError) as err:
        load_image(png_declaring(100_000, 100_000))
    assert err.value.kind == "too large"
    # Below Pillow's own bomb limit but above ours: refused from the header alone.
    with pytest.raises(ImageError, match="max_pixels"):
        load_image(png_declaring(5_000, 5_000), max_pixels=1_000_000)


def test_jpeg_declaring_a_huge_size_does_not_crash():
    image, reason = try_load_image(jpeg_declaring(30_000, 30_000), max_pixels=50_000_000)
    assert image is None and reason


def test_large_jpeg_is_decoded_at_a_reduced_scale():
    big = Image.new("RGB", (4000, 3000), RED)
    ImageDraw.Draw(big).rectangle([1000, 1000, 3000, 2000], fill=(20, 20, 200))
    data = jpeg_bytes(big, quality=80)
    loaded = load_image(data, max_pixels=1_000_000)
    assert loaded.width * loaded.height <= 1_000_000
    assert loaded.size == (1000, 750)  # 1/4 scale, straight from the DCT coefficients
    # With a target size the decode stops at the smallest scale that keeps the long side.
    loaded = load_image(data, target_size=900)
    assert 900 <= loaded.width < 2000


def test_large_png_above_max_pixels_is_refused_but_below_is_reduced():
    big = png_bytes(Image.new("RGB", (2000, 1500), RED))
    with pytest.raises(ImageError, match="max_pixels"):
        load_image(big, max_pixels=1_000_000)
    loaded = load_image(big, target_size=400)
    assert 400 <= max(loaded.size) < 1000


def test_bad_images_are_counted_not_raised(tmp_path):
    good = jpeg_bytes(Image.new("RGB", (8, 8), RED))
    cases = {
        "good.jpg": good,
        "html.jpg": b"<html></html>",
        "truncated.jpg": jpeg_bytes(noisy_rgb((128, 96)))[:300],
        "bomb.png": png_declaring(100_000, 100_000),
        "empty.jpg": b"",
    }
    paths = [write(tmp_path, name, data) for name, data in cases.items()]
    results = [try_load_image(p) for p in [*paths, tmp_path / "missing.jpg", None]]
    failed = [reason for image, reason in results if image is None]
    assert len(failed) == 6 and all(failed)


# --- preprocessing -------------------------------------------------------------------------------


def product_on_white(size=(200, 120), box=(50, 30, 150, 90), margin_colour=(255, 255, 255)):
    image = Image.new("RGB", size, margin_colour)
    ImageDraw.Draw(image).rectangle([box[0], box[1], box[2] - 1, box[3] - 1], fill=RED)
    return image


def test_white_borders_are_cropped_with_tolerance_and_noise():
    assert white_border_box(np.asarray(product_on_white())) == (50, 30, 150, 90)
    # Off-white JPEG-ish margins count as white.
    assert crop_white_borders(product_on_white(margin_colour=(248, 250, 246))).size == (100, 60)
    # One speck of dust in the margin does not stop the crop.
    image = product_on_white()
    image.putpixel((5, 5), (0, 0, 0))
    assert crop_white_borders(image).size == (100, 60)
    # All white: nothing to crop to, the image is kept.
    white = Image.new("RGB", (30, 30), (255, 255, 255))
    assert crop_white_borders(white).size == (30, 30)


def test_pad_to_square_is_white_and_centred():
    square = pad_to_square(Image.new("RGB", (40, 10), RED))
    assert square.size == (40, 40)
    pixels = np.asarray(square)
    assert tuple(pixels[0, 0]) == (255, 255, 255) and tuple(pixels[20, 20]) == RED


def test_preprocess_fills_the_frame_without_distortion():
    config = PreprocessConfig(size=64)
    out = preprocess_image(product_on_white(), config)
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    red_rows = np.flatnonzero((out[:, 32, 0] > 180) & (out[:, 32, 1] < 80))
    red_cols = np.flatnonzero((out[32, :, 0] > 180) & (out[32, :, 1] < 80))
    # The 100×60 product now spans the width; its aspect ratio is kept (about 64×38).
    assert red_cols.size >= 62 and 34 <= red_rows.size <= 42
    no_crop = preprocess_image(product_on_white(), PreprocessConfig(size=64, crop_borders=False))
    assert ((no_crop[32, :, 0] > 180) & (no_crop[32, :, 1] < 80)).sum() < 40


def test_normalize_scales_like_efficientnet_lite():
    config = PreprocessConfig(size=8)
    batch = np.stack([np.full((8, 8, 3), 255, np.uint8), np.zeros((8, 8, 3), np.uint8)])
    x = normalize(batch, config)
    assert x.shape == (2, 3, 8, 8) and x.dtype == np.float32
    assert np.isclose(x[0].max(), 1.0) and np.isclose(x[1].min(), -127 / 128)


def test_preprocess_config_fingerprint_and_validation():
    assert PreprocessConfig().fingerprint() == PreprocessConfig().fingerprint()
    assert PreprocessConfig().fingerprint() != PreprocessConfig(crop_borders=False).fingerprint()
    assert PreprocessConfig(size=224).decode_size == 448
    with pytest.raises(ConfigError):
        PreprocessConfig(size=2)
    with pytest.raises(ConfigError):
        PreprocessConfig(resample="magic")
