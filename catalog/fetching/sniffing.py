"""Content type from the first bytes of a body, never from what the server claims."""

from __future__ import annotations

import re

# How many leading bytes sniff_type() needs to decide.
SNIFF_BYTES = 512

IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp", "image/avif", "image/bmp", "image/tiff"})

_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"II*\x00", "image/tiff"),
    (b"MM\x00*", "image/tiff"),
    (b"\x1f\x8b", "application/gzip"),
)
_BMP_DIB_HEADER_SIZES = frozenset({12, 16, 40, 52, 56, 64, 108, 124})
_AVIF_BRANDS = (b"avif", b"avis")
# Tags that make a document HTML (after the WHATWG MIME sniffing standard's list).
_HTML_START = re.compile(
    rb"<(!doctype\s+html|html|head|body|script|iframe|h1|div|font|table|a|style|title|b|br|p|meta|link)"
    rb"[\s>/]",
    re.IGNORECASE,
)
_BOMS = (b"\xef\xbb\xbf",)
_TEXT_CONTROL = re.compile(rb"[\x00-\x08\x0b\x0e-\x1f\x7f]")


def _is_avif(head: bytes) -> bool:
    if head[4:8] != b"ftyp":
        return False
    box_size = int.from_bytes(head[:4], "big")
    brands = head[8:12] + head[16 : min(max(box_size, 16), len(head))]
    return any(brands[offset : offset + 4] in _AVIF_BRANDS for offset in range(0, len(brands), 4))


def _is_bmp(head: bytes) -> bool:
    if head[:2] != b"BM" or len(head) < 18:
        return False
    return int.from_bytes(head[14:18], "little") in _BMP_DIB_HEADER_SIZES


def _sniff_text(head: bytes) -> str | None:
    for bom in _BOMS:
        head = head.removeprefix(bom)
    text = head.lstrip(b" \t\r\n\f")
    if text.startswith(b"<?xml"):
        return "text/xml"
    if _HTML_START.match(text) or text.startswith(b"<!--"):
        # A leading comment is HTML far more often than XML (where the declaration comes first).
        return "text/html"
    if text[:1] == b"<" and text[1:2].isalpha():
        return "text/xml"
    if text[:1] in (b"{", b"["):
        return "application/json"
    if not text or _TEXT_CONTROL.search(head):
        return None
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as error:
        # The sample may end inside a multi-byte character.
        if error.start < len(head) - 3:
            return None
    return "text/plain"


def sniff_type(head: bytes) -> str | None:
    """Names the type of a body from its first bytes (SNIFF_BYTES are plenty); None when unknown."""
    head = bytes(head[:SNIFF_BYTES])
    for magic, mime in _MAGIC:
        if head.startswith(magic):
            return mime
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if _is_avif(head):
        return "image/avif"
    if _is_bmp(head):
        return "image/bmp"
    return _sniff_text(head)


def is_image_type(mime: str | None) -> bool:
    return mime in IMAGE_TYPES
