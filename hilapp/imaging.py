"""Image utilities shared by the synthesis and review apps.

Pure functions over bytes and Pillow images: validating untrusted uploads, deterministic PNG
encoding with text metadata, CID template standardisation, and combining reference images into
a contact sheet for providers that accept fewer input images than a frame has references.
"""

from __future__ import annotations

import hashlib
import io
import math
import struct
import warnings
import zlib
from collections.abc import Mapping, Sequence
from functools import lru_cache

from PIL import Image, ImageDraw, ImageFile, ImageFont, UnidentifiedImageError
from PIL.PngImagePlugin import PngInfo

MAX_UPLOAD_BYTES = 20 * 1024 * 1024
MAX_UPLOAD_PIXELS = 4096 * 4096
ALLOWED_FORMATS = frozenset({"PNG", "JPEG", "WEBP"})

WHITE = (255, 255, 255)
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class ImageRejected(ValueError):
    """An image the application will not accept; the message is meant for the user."""


def validate_image_upload(
    data: bytes, *, max_bytes: int = MAX_UPLOAD_BYTES, max_pixels: int = MAX_UPLOAD_PIXELS
) -> Image.Image:
    """Check untrusted bytes and return the fully decoded image in RGB or RGBA.

    The format is Pillow's detection, never a filename. The pixel count is checked from the
    header before anything is decoded, so decompression bombs never allocate their pixels.
    """
    if not data:
        raise ImageRejected("The file is empty.")
    if len(data) > max_bytes:
        raise ImageRejected(
            f"The file is {len(data)} bytes; the limit is {max_bytes} bytes "
            f"({max_bytes / (1024 * 1024):.0f} MiB)."
        )
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        # A global switch someone else flipped would let truncated files through silently.
        raise RuntimeError("PIL.ImageFile.LOAD_TRUNCATED_IMAGES must stay False")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            fmt = image.format
            if fmt not in ALLOWED_FORMATS:
                allowed = ", ".join(sorted(ALLOWED_FORMATS))
                raise ImageRejected(
                    f"The file is a {fmt or 'unknown'} image; only {allowed} are accepted."
                )
            width, height = image.size
            if width <= 0 or height <= 0:
                raise ImageRejected("The image has no pixels.")
            if width * height > max_pixels:
                raise ImageRejected(
                    f"The image is {width}x{height} pixels ({width * height} pixels); "
                    f"the limit is {max_pixels} pixels."
                )
            image.load()
    except ImageRejected:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageRejected(
            f"The image declares too many pixels to decode safely (limit {max_pixels})."
        ) from exc
    except UnidentifiedImageError as exc:
        raise ImageRejected("The file is not an image Pillow can read.") from exc
    except (OSError, SyntaxError, EOFError, ValueError, struct.error, zlib.error) as exc:
        raise ImageRejected(
            f"The {_format_name(data)} file is truncated or corrupt ({exc})."
        ) from exc
    return _to_rgb_or_rgba(image)


def _format_name(data: bytes) -> str:
    """A human name for the format guessed from the magic bytes (for error messages)."""
    if data.startswith(_PNG_SIGNATURE):
        return "PNG"
    if data.startswith(b"\xff\xd8"):
        return "JPEG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    return "image"


def _to_rgb_or_rgba(image: Image.Image) -> Image.Image:
    if image.mode in ("RGB", "RGBA"):
        return image
    has_alpha = image.mode in ("LA", "PA", "La", "RGBa") or "transparency" in image.info
    return image.convert("RGBA" if has_alpha else "RGB")


def to_png(image: Image.Image, metadata: Mapping[str, str] | None = None) -> bytes:
    """Encode as PNG; equal input gives equal bytes (no timestamps). Metadata becomes tEXt."""
    if image.mode not in ("1", "L", "LA", "P", "RGB", "RGBA", "I", "I;16"):
        image = image.convert("RGBA" if "A" in image.mode else "RGB")
    info = PngInfo()
    for key, value in (metadata or {}).items():
        if not (1 <= len(key) <= 79) or not key.isascii():
            raise ValueError(f"PNG text key must be 1-79 ASCII characters: {key!r}")
        # add_text falls back to an iTXt chunk for values that are not Latin-1.
        info.add_text(key, str(value))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info, compress_level=6, optimize=False)
    return buffer.getvalue()


def from_png(data: bytes) -> Image.Image:
    """Decode PNG bytes (trusted, e.g. our own storage) into a loaded image."""
    image = png_header(data)
    image.load()
    return image


def png_header(data: bytes) -> Image.Image:
    """A PNG (trusted bytes) opened but not decoded: its size and mode come from the header."""
    image = Image.open(io.BytesIO(data))
    if image.format != "PNG":
        raise ImageRejected(f"Expected a PNG image, got {image.format or 'unknown'}.")
    return image


def png_metadata(data: bytes) -> dict[str, str]:
    """The text chunks (tEXt, zTXt, iTXt) of a PNG, without decoding its pixels."""
    if not data.startswith(_PNG_SIGNATURE):
        return {}
    out: dict[str, str] = {}
    pos = len(_PNG_SIGNATURE)
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        ctype = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if len(body) < length or ctype == b"IEND":
            break
        try:
            if ctype == b"tEXt":
                key, _, value = body.partition(b"\0")
                out[key.decode("latin-1")] = value.decode("latin-1")
            elif ctype == b"zTXt":
                key, _, rest = body.partition(b"\0")
                out[key.decode("latin-1")] = zlib.decompress(rest[1:]).decode("latin-1")
            elif ctype == b"iTXt":
                key, _, rest = body.partition(b"\0")
                compressed, rest = rest[0], rest[2:]
                _lang, _, rest = rest.partition(b"\0")
                _tkey, _, text = rest.partition(b"\0")
                if compressed:
                    text = zlib.decompress(text)
                out[key.decode("latin-1")] = text.decode("utf-8")
        except (zlib.error, UnicodeDecodeError, IndexError):
            continue
    return out


def _flatten_on_white(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    rgba = image.convert("RGBA")
    background = Image.new("RGB", rgba.size, WHITE)
    background.paste(rgba, mask=rgba.getchannel("A"))
    return background


def _fit(image: Image.Image, width: int, height: int) -> Image.Image:
    scale = min(width / image.width, height / image.height)
    new_size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    if new_size == image.size:
        return image
    return image.resize(new_size, Image.Resampling.LANCZOS)


def standardize_template(image: Image.Image, size: int = 1024) -> Image.Image:
    """Fit inside sizexsize keeping the aspect ratio, padded with pure white, in RGB."""
    fitted = _fit(_flatten_on_white(image), size, size)
    canvas = Image.new("RGB", (size, size), WHITE)
    canvas.paste(fitted, ((size - fitted.width) // 2, (size - fitted.height) // 2))
    return canvas


@lru_cache(maxsize=32)
def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's bundled font at a pixel size (no system fonts needed)."""
    return ImageFont.load_default(size=max(6, size))


def contact_sheet(
    images: Sequence[Image.Image], *, size: int = 1024, labels: Sequence[str] | None = None
) -> Image.Image:
    """Several images on one white sizexsize RGB sheet, in a grid, in order, optionally labelled."""
    if not images:
        raise ValueError("contact_sheet needs at least one image")
    if labels is not None and len(labels) != len(images):
        raise ValueError("labels must match images one to one")
    cols = math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / cols)
    cell_w, cell_h = size // cols, size // rows
    pad = max(2, size // 128)
    label_h = max(10, cell_h // 12) if labels else 0
    label_font = font(label_h - 2) if labels else None
    sheet = Image.new("RGB", (size, size), WHITE)
    draw = ImageDraw.Draw(sheet)
    for index, image in enumerate(images):
        col, row = index % cols, index // cols
        x0, y0 = col * cell_w, row * cell_h
        fitted = _fit(_flatten_on_white(image), cell_w - 2 * pad, cell_h - 2 * pad - label_h)
        sheet.paste(
            fitted,
            (
                x0 + (cell_w - fitted.width) // 2,
                y0 + pad + (cell_h - 2 * pad - label_h - fitted.height) // 2,
            ),
        )
        if labels and label_font is not None:
            draw.text(
                (x0 + cell_w // 2, y0 + cell_h - pad - label_h // 2),
                labels[index],
                fill=(20, 20, 20),
                font=label_font,
                anchor="mm",
            )
    return sheet


def fit_inputs(images: Sequence[bytes], limit: int | None) -> list[bytes]:
    """At most ``limit`` input images: keep the first limit-1, sheet the rest into one PNG."""
    if limit is None or len(images) <= limit:
        return list(images)
    if limit < 1:
        raise ValueError("limit must be at least 1")
    keep, rest = list(images[: limit - 1]), images[limit - 1 :]
    decoded = []
    for data in rest:
        image = Image.open(io.BytesIO(data))
        image.load()
        decoded.append(image)
    labels = [f"#{limit + i}" for i in range(len(rest))]
    return [*keep, to_png(contact_sheet(decoded, labels=labels))]


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
