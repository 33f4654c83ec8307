"""Image bytes in and out of the API: base64 PNG, data URLs, A1111 PNG text chunks."""

from __future__ import annotations

import base64
import binascii
import io

from PIL import Image, PngImagePlugin, UnidentifiedImageError

from .errors import InvalidInput

PARAMETERS_CHUNK = "parameters"  # the tEXt key A1111 writes and `png-info` reads
MAX_DECODED_PIXELS = 4096 * 4096


def decode_image(data: str, field: str | tuple[str | int, ...]) -> Image.Image:
    """Raw base64 or a `data:image/...;base64,` URL to a PIL image; InvalidInput naming
    `field` (where in the request the image came from) if it is not one."""
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
    try:
        image = Image.open(io.BytesIO(raw))
        if image.width * image.height > MAX_DECODED_PIXELS:
            raise InvalidInput(field, f"image is {image.width}x{image.height}, larger than allowed")
        image.load()
    except InvalidInput:
        raise
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError, SyntaxError):
        raise InvalidInput(field, "is not a decodable image (PNG, JPEG, WebP, ...)") from None
    return image


def encode_png(image: Image.Image, parameters: str | None = None) -> str:
    """Base64 PNG (no data: prefix), with A1111's `parameters` text chunk when given."""
    info = None
    if parameters is not None:
        info = PngImagePlugin.PngInfo()
        info.add_text(PARAMETERS_CHUNK, parameters)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info)
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
        resized = image.resize((max(width, round(image.width * scale)), max(height, round(image.height * scale))), Image.LANCZOS)
        left = (resized.width - width) // 2
        top = (resized.height - height) // 2
        return resized.crop((left, top, left + width, top + height))
    if resize_mode == 2:
        scale = min(width / image.width, height / image.height)
        inner = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.LANCZOS)
        canvas = image.resize((width, height), Image.LANCZOS)  # stretched background as fill
        canvas.paste(inner, ((width - inner.width) // 2, (height - inner.height) // 2))
        return canvas
    return image.resize((width, height), Image.LANCZOS)
