"""``input_image`` content parts: what the session accepts (pure).

An image is a data URL (``data:image/png;base64,…`` or ``data:image/jpeg;base64,…``)
whose bytes really are a PNG or JPEG, no bigger than ``CoreLimits.max_image_bytes``
decoded. A session whose model cannot see refuses every image with
:data:`IMAGE_NOT_SUPPORTED`, so the model never answers about a picture it was not shown.
"""

from __future__ import annotations

import binascii
import re

from ..protocol.errors import RealtimeError

IMAGE_NOT_SUPPORTED = "image_input_not_supported"
"""The error code of an image sent to a session whose model cannot see (docs/fields.md)."""

_DATA_URL = re.compile(r"data:(image/(?:png|jpeg));base64,(.*)", re.DOTALL)
_MAGIC = {"image/png": b"\x89PNG\r\n\x1a\n", "image/jpeg": b"\xff\xd8\xff"}


def check_image(image_url: str, param: str, *, accepts_images: bool, max_bytes: int) -> None:
    """Raise :class:`RealtimeError` unless ``image_url`` is an image the model can be shown."""
    if not accepts_images:
        raise RealtimeError(
            "This session's model cannot see images: its profile's LLM takes text only. Send the "
            "image to a model served by a vision-capable backend (docs/engines.md), or describe "
            "it in text.", IMAGE_NOT_SUPPORTED, param)
    match = _DATA_URL.fullmatch(image_url)
    if match is None:
        raise RealtimeError(
            "Invalid image_url: expected a data URL of a PNG or JPEG image "
            "('data:image/png;base64,...' or 'data:image/jpeg;base64,...').", "invalid_value", param)
    media_type, payload = match.groups()
    if len(payload) * 3 // 4 > max_bytes + 3:
        raise _too_big(param, max_bytes)
    try:
        data = binascii.a2b_base64(payload, strict_mode=True)
    except (binascii.Error, ValueError):
        raise RealtimeError(
            "Invalid image_url: the data URL's payload is not valid base64.", "invalid_value", param
        ) from None
    if len(data) > max_bytes:
        raise _too_big(param, max_bytes)
    if not data.startswith(_MAGIC[media_type]):
        raise RealtimeError(
            f"Invalid image_url: the data is not a {media_type.split('/')[1].upper()} image.",
            "invalid_value", param)


def _too_big(param: str, max_bytes: int) -> RealtimeError:
    return RealtimeError(
        f"Invalid image_url: images may be at most {max_bytes} bytes (setting max_image_bytes).",
        "invalid_value", param)
