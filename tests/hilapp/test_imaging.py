import io
import struct
import zlib

import pytest
from PIL import Image

from hilapp.imaging import (
    ImageRejected,
    contact_sheet,
    fit_inputs,
    from_png,
    png_metadata,
    sha256_hex,
    standardize_template,
    to_png,
    validate_image_upload,
)


def encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def picture(size=(64, 48), colour=(200, 30, 30)) -> Image.Image:
    image = Image.new("RGB", size, colour)
    image.paste((10, 200, 10), (5, 5, 30, 20))
    return image


def png_chunk(kind: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(kind + body) & 0xFFFFFFFF
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)


def ihdr_only_png(width: int, height: int) -> bytes:
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IEND", b"")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_accepts_real_png_jpeg_webp(fmt):
    image = validate_image_upload(encode(picture(), fmt))
    assert image.size == (64, 48)
    assert image.mode in ("RGB", "RGBA")


def test_rgba_png_keeps_alpha_and_palette_png_becomes_rgb():
    rgba = Image.new("RGBA", (8, 8), (1, 2, 3, 100))
    assert validate_image_upload(encode(rgba, "PNG")).mode == "RGBA"
    assert validate_image_upload(encode(picture().convert("P"), "PNG")).mode == "RGB"


def test_rejects_empty_bytes():
    with pytest.raises(ImageRejected, match="empty"):
        validate_image_upload(b"")


def test_rejects_text_bytes():
    with pytest.raises(ImageRejected, match="not an image"):
        validate_image_upload(b"hello, I am definitely a PNG file")


@pytest.mark.parametrize("fmt", ["GIF", "BMP"])
def test_rejects_formats_not_allowed(fmt):
    with pytest.raises(ImageRejected, match=f"{fmt} image; only JPEG, PNG, WEBP"):
        validate_image_upload(encode(picture(), fmt))


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_rejects_truncated_files(fmt):
    noisy = Image.effect_noise((256, 256), 80).convert("RGB")
    data = encode(noisy, fmt)
    with pytest.raises(ImageRejected, match="truncated or corrupt"):
        validate_image_upload(data[: len(data) // 2])


def test_rejects_too_many_bytes():
    data = encode(picture(), "PNG")
    with pytest.raises(ImageRejected, match="limit is 100 bytes"):
        validate_image_upload(data, max_bytes=100)


def test_rejects_decompression_bomb_header_without_decoding():
    # 30000x30000 declared in a 57-byte file: refused from the header alone.
    with pytest.raises(ImageRejected, match="too many pixels"):
        validate_image_upload(ihdr_only_png(30000, 30000))


def test_rejects_large_but_compressible_image_over_pixel_limit():
    data = encode(Image.new("L", (5000, 4000), 255), "PNG")
    assert len(data) < 100_000
    with pytest.raises(ImageRejected, match="5000x4000 pixels"):
        validate_image_upload(data)


def test_pixel_limit_is_configurable():
    with pytest.raises(ImageRejected, match="limit is 1000 pixels"):
        validate_image_upload(encode(picture(), "PNG"), max_pixels=1000)


def test_to_png_is_deterministic_and_metadata_round_trips():
    meta = {"sim.faults": "wrong_pose,low_quality", "cid": "cid_0001", "note": "Größe ✓"}
    first = to_png(picture(), meta)
    assert first == to_png(picture(), dict(meta))
    assert png_metadata(first) == meta
    assert from_png(first).size == (64, 48)
    assert sha256_hex(first) == sha256_hex(to_png(picture(), meta))


def test_png_metadata_is_empty_for_no_metadata_or_other_formats():
    assert png_metadata(to_png(picture())) == {}
    assert png_metadata(encode(picture(), "JPEG")) == {}
    assert png_metadata(b"") == {}


def test_from_png_rejects_other_formats():
    with pytest.raises(ImageRejected, match="Expected a PNG"):
        from_png(encode(picture(), "JPEG"))


@pytest.mark.parametrize("size", [(2000, 500), (300, 900), (1024, 1024), (10, 10)])
def test_standardize_template_is_exactly_square_with_white_padding(size):
    out = standardize_template(Image.new("RGB", size, (0, 0, 255)))
    assert out.size == (1024, 1024)
    assert out.mode == "RGB"
    assert out.getpixel((512, 512)) == (0, 0, 255)
    if size[0] != size[1]:
        corner = (0, 0)
        assert out.getpixel(corner) == (255, 255, 255)


def test_standardize_template_flattens_transparency_onto_white():
    out = standardize_template(Image.new("RGBA", (100, 100), (0, 0, 0, 0)), size=64)
    assert out.getpixel((32, 32)) == (255, 255, 255)


def test_contact_sheet_is_square_white_grid():
    sheet = contact_sheet(
        [picture(colour=(255, 0, 0)), picture(colour=(0, 0, 255))], size=512, labels=["a", "b"]
    )
    assert sheet.size == (512, 512)
    assert sheet.getpixel((0, 0)) == (255, 255, 255)
    assert sheet.getpixel((128 + 60, 300)) == (255, 0, 0)
    assert sheet.getpixel((384 + 60, 300)) == (0, 0, 255)


def test_fit_inputs_keeps_everything_under_the_limit():
    images = [to_png(picture(colour=(i * 40, 0, 0))) for i in range(3)]
    assert fit_inputs(images, None) == images
    assert fit_inputs(images, 3) == images
    assert fit_inputs(images, 5) == images


def test_fit_inputs_keeps_order_and_sheets_the_rest():
    images = [to_png(picture(colour=(i * 40, 0, 0))) for i in range(5)]
    out = fit_inputs(images, 3)
    assert len(out) == 3
    assert out[:2] == images[:2]
    sheet = from_png(out[2])
    assert sheet.size == (1024, 1024)
    assert fit_inputs(images, 1)[0] not in images
    assert len(fit_inputs(images, 1)) == 1
