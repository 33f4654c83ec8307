"""Image bytes in and out of the API: base64 PNG, data URLs, A1111 PNG text chunks."""

from __future__ import annotations

import base64
import binascii
import io

from PIL import Image, PngImagePlugin, UnidentifiedImageError

from .errors import InvalidInput

PARAMETERS_CHUNK = "parameters"  # the tEXt key A1111 writes and `png-info` reads
# Decoding cost and memory grow with pixels, not bytes: a 1 KiB Group-4 TIFF or a 20 KiB
# PNG of zeros can say 4000x4000. The size in the header is checked before anything is
# decoded. 4096x4096 is four times the largest output (2048x2048 by default), so a photo
# larger than the output size still works as an init image (it is resized first).
MAX_DECODED_PIXELS = 4096 * 4096
MAX_SIDE = 16384
# What a client can send as an image. PIL opens many more formats (TIFF, PSD, ICO, ...),
# each one more parser to harden; A1111 clients send PNG, JPEG or WebP.
ACCEPTED_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP")
# PNG text chunks (tEXt, zTXt, iTXt) together; A1111's `parameters` chunk is a few KiB.
# PIL refuses one chunk that inflates past 1 MiB by itself (PngImagePlugin.MAX_TEXT_CHUNK).
MAX_TEXT_BYTES = 1024 * 1024
# zlib level of the PNGs the server sends. PIL's default, which A1111 uses, is 6; on
# photo-like 512x512 images level 4 makes the same bytes (within 0.5%) in 24% less CPU
# time, and on flat ones no difference either way (docs/benchmarks.md, "Throughput through
# the server"). Lossless at any level: the pixels and the parameters chunk are the same.
PNG_COMPRESS_LEVEL = 4


def decode_base64(data: str, field: str | tuple[str | int, ...]) -> bytes:
    """Raw base64 or a `data:image/...;base64,` URL to bytes; InvalidInput naming `field`."""
    if not isinstance(data, str) or not data.strip():
        raise InvalidInput(field, "expected a base64-encoded image, got an empty value")
    payload = data.strip()
    if payload.startswith("data:"):
        header, _, payload = payload.partition(",")
        if ";base64" not in header:
            raise InvalidInput(field, "data URL must be base64-encoded")
    try:
        raw = base64.b64decode(payload + "=" * (-len(payload) % 4), validate=False)
    except (binascii.Error, ValueError):
        raise InvalidInput(field, "is not valid base64") from None
    if not raw:
        raise InvalidInput(field, "is not valid base64")
    return raw


def decode_image(data: str, field: str | tuple[str | int, ...]) -> Image.Image:
    """A client's base64 image (see `decode_base64`) to a loaded PIL image; InvalidInput
    naming `field` (where in the request the image came from) if it is not an image, is
    not one of ACCEPTED_FORMATS, or is larger than MAX_DECODED_PIXELS or its text chunks
    than MAX_TEXT_BYTES. CPU-bound: the service runs it on a worker thread."""
    raw = decode_base64(data, field)
    try:
        # The header only: size and format are known before any pixel is decoded.
        image = Image.open(io.BytesIO(raw), formats=ACCEPTED_FORMATS)
    except UnidentifiedImageError:
        raise InvalidInput(field, f"is not an image in an accepted format ({', '.join(ACCEPTED_FORMATS)})") from None
    except ValueError as error:
        raise _text_chunk_error(field, error) from None
    except (OSError, SyntaxError, Image.DecompressionBombError, EOFError):
        raise InvalidInput(field, "is not a decodable image") from None
    width, height = image.size
    if width * height > MAX_DECODED_PIXELS or max(width, height) > MAX_SIDE:
        raise InvalidInput(
            field, f"image is {width}x{height}; images of more than {MAX_DECODED_PIXELS} pixels are not accepted"
        )
    try:
        image.load()
    except ValueError as error:  # a text chunk after the image data
        raise _text_chunk_error(field, error) from None
    except (OSError, SyntaxError, Image.DecompressionBombError, EOFError):
        raise InvalidInput(field, "is not a decodable image") from None
    text_bytes = sum(len(key) + len(str(value)) for key, value in (getattr(image, "text", None) or {}).items())
    if text_bytes > MAX_TEXT_BYTES:
        raise InvalidInput(field, f"its PNG text chunks hold {text_bytes} bytes; the limit is {MAX_TEXT_BYTES}")
    return image


def _text_chunk_error(field: str | tuple[str | int, ...], error: ValueError) -> InvalidInput:
    """PIL's ValueError for a PNG text chunk over its limits ("Decompressed data too large
    for PngImagePlugin.MAX_TEXT_CHUNK", "Too much memory used in text chunks"), which is
    the client's input, as a 4xx; any other ValueError is a bug and stays one."""
    message = str(error)
    if "text chunk" in message or "MAX_TEXT_CHUNK" in message:
        return InvalidInput(field, f"a PNG text chunk inflates past {PngImagePlugin.MAX_TEXT_CHUNK} bytes")
    raise error


def encode_png(image: Image.Image, parameters: str | None = None) -> str:
    """Base64 PNG (no data: prefix), with A1111's `parameters` text chunk when given."""
    info = None
    if parameters is not None:
        info = PngImagePlugin.PngInfo()
        info.add_text(PARAMETERS_CHUNK, parameters)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info, compress_level=PNG_COMPRESS_LEVEL)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def read_parameters(image: Image.Image) -> str | None:
    text = getattr(image, "text", None) or {}
    return text.get(PARAMETERS_CHUNK) or image.info.get(PARAMETERS_CHUNK)


def fit(image: Image.Image, width: int, height: int, resize_mode: int = 0) -> Image.Image:
    """Resize an init image to the target size the way A1111's resize modes do.

    0: just resize (stretch); 1: crop and resize (cover, centre crop); 2: resize and fill
    (contain, pad with the stretched edges); 3 (latent upscale) behaves as 0 here.
    """
    image = image.convert("RGB")
    if image.size == (width, height):
        return image
    if resize_mode == 1:
        scale = max(width / image.width, height / image.height)
        size = (max(width, round(image.width * scale)), max(height, round(image.height * scale)))
        resized = image.resize(size, Image.Resampling.LANCZOS)
        left = (resized.width - width) // 2
        top = (resized.height - height) // 2
        return resized.crop((left, top, left + width, top + height))
    if resize_mode == 2:
        scale = min(width / image.width, height / image.height)
        inner = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.Resampling.LANCZOS)
        canvas = image.resize((width, height), Image.Resampling.LANCZOS)  # stretched background as fill
        canvas.paste(inner, ((width - inner.width) // 2, (height - inner.height) // 2))
        return canvas
    return image.resize((width, height), Image.Resampling.LANCZOS)
