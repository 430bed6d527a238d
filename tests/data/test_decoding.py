"""One decoding everywhere: ``load_image`` (the readers, predictors and ``kseg predict``) gives the very pixels
the SavedModel's ``serving_bytes`` decodes, on a corpus of odd images written here."""

import io
import struct
import zlib

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from kseg.data.preprocessing import exif_orientation, load_image
from kseg.export.base import decode_image


def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_16bit(samples):
    """A PNG of 16-bit samples ``[H, W]`` (grey) or ``[H, W, 3]`` (RGB), written by hand (PIL writes no 16-bit RGB)."""
    height, width = samples.shape[:2]
    color = 0 if samples.ndim == 2 else 2
    rows = b"".join(b"\x00" + samples[y].astype(">u2").tobytes() for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 16, color, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", zlib.compress(rows))
            + png_chunk(b"IEND", b""))


def encoded(image, fmt, **options):
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def corpus():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (13, 17, 3), np.uint8)
    grey = rng.integers(0, 256, (13, 17), np.uint8)
    files = {
        "rgb.png": encoded(Image.fromarray(rgb), "PNG"),
        "grey.png": encoded(Image.fromarray(grey), "PNG"),
        "grey_alpha.png": encoded(Image.fromarray(np.stack([grey, grey[::-1]], -1), mode="LA"), "PNG"),
        "rgba.png": encoded(Image.fromarray(rng.integers(0, 256, (13, 17, 4), np.uint8), mode="RGBA"), "PNG"),
        "palette.png": encoded(Image.fromarray(rgb).convert("P", palette=Image.ADAPTIVE, colors=17), "PNG"),
        "palette_transparent.png": encoded(Image.fromarray(rgb).convert("P", palette=Image.ADAPTIVE), "PNG",
                                           transparency=3),
        "bilevel.png": encoded(Image.fromarray(grey > 128), "PNG"),
        "grey16.png": png_16bit(rng.integers(0, 65536, (13, 17), np.uint16)),
        "rgb16.png": png_16bit(rng.integers(0, 65536, (13, 17, 3), np.uint16)),
        "rgb.bmp": encoded(Image.fromarray(rgb), "BMP"),
        "grey.bmp": encoded(Image.fromarray(grey), "BMP"),
        "rgb.gif": encoded(Image.fromarray(rgb).convert("P", palette=Image.ADAPTIVE), "GIF"),
        "rgb.jpg": encoded(Image.fromarray(rgb), "JPEG", quality=90),
        "grey.jpg": encoded(Image.fromarray(grey), "JPEG", quality=90),
        "cmyk.jpg": encoded(Image.fromarray(rgb).convert("CMYK"), "JPEG", quality=95),
        "progressive.jpg": encoded(Image.fromarray(rgb), "JPEG", progressive=True),
        "subsampled.jpg": encoded(Image.fromarray(rgb), "JPEG", subsampling=2),
    }
    rotated = Image.fromarray(rgb)
    exif = rotated.getexif()
    exif[0x0112] = 6  # stored sideways: "rotate 90 degrees clockwise to view"
    files["exif_rotated.jpg"] = encoded(rotated, "JPEG", exif=exif.tobytes())
    return files


@pytest.mark.parametrize("name", sorted(corpus()))
def test_the_cli_and_the_saved_model_read_the_same_pixels(name, tmp_path):
    data = corpus()[name]
    path = tmp_path / name
    path.write_bytes(data)
    ours = load_image(path)
    served = decode_image(tf.constant(data)).numpy()
    assert ours.dtype == np.uint8 and ours.shape == (13, 17, 3)
    np.testing.assert_array_equal(ours, served)


def test_sixteen_bits_keep_their_high_byte_not_a_white_image(tmp_path):
    samples = np.array([[0, 255, 256, 32768, 65535]], np.uint16)
    path = tmp_path / "grey16.png"
    path.write_bytes(png_16bit(samples))
    np.testing.assert_array_equal(load_image(path)[0, :, 0], [0, 0, 1, 128, 255])


def test_exif_orientation_is_reported_not_applied(tmp_path):
    path = tmp_path / "rotated.jpg"
    path.write_bytes(corpus()["exif_rotated.jpg"])
    assert exif_orientation(path) == 6 and load_image(path).shape == (13, 17, 3)  # as stored
    plain = tmp_path / "plain.png"
    plain.write_bytes(corpus()["rgb.png"])
    assert exif_orientation(plain) is None


def test_a_decompression_bomb_is_refused_in_one_line(tmp_path):
    header = struct.pack(">IIBBBBB", 60_000, 60_000, 8, 2, 0, 0, 0)
    bomb = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
    bomb += png_chunk(b"IEND", b"")
    path = tmp_path / "bomb.png"
    path.write_bytes(bomb)
    with pytest.raises(ValueError, match="decompression bomb") as error:
        load_image(path)
    assert "\n" not in str(error.value)
    small = tmp_path / "small_bomb.png"  # under PIL's own limit, over kseg's
    header = struct.pack(">IIBBBBB", 10_000, 10_000, 8, 2, 0, 0, 0)
    small.write_bytes(b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IEND", b""))
    with pytest.raises(ValueError, match="declares 10000 x 10000 pixels"):
        load_image(small)
    with pytest.raises(tf.errors.InvalidArgumentError, match="declares a side over"):
        decode_image(tf.constant(bomb))


def test_unreadable_files_are_named(tmp_path):
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    with pytest.raises(ValueError, match="Cannot read .*notes.jpg as an image"):
        load_image(text)
    with pytest.raises(FileNotFoundError, match="No image at"):
        load_image(tmp_path / "absent.png")
