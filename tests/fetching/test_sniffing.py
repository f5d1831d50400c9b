import gzip
import io

import pytest
from PIL import Image

from catalog.fetching import sniff_type


def _image(fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (10, 120, 200)).save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        ("JPEG", "image/jpeg"),
        ("PNG", "image/png"),
        ("GIF", "image/gif"),
        ("WEBP", "image/webp"),
        ("BMP", "image/bmp"),
        ("TIFF", "image/tiff"),
        ("AVIF", "image/avif"),
    ],
)
def test_real_images_are_recognised(fmt, expected):
    try:
        data = _image(fmt)
    except (KeyError, OSError):
        pytest.skip(f"Pillow here cannot write {fmt}")

    assert sniff_type(data[:512]) == expected


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (gzip.compress(b"<urlset/>"), "application/gzip"),
        (b'<?xml version="1.0" encoding="UTF-8"?><urlset>', "text/xml"),
        (b"\xef\xbb\xbf<?xml version='1.0'?>", "text/xml"),
        (b"  \n<urlset xmlns='http://www.sitemaps.org/schemas/sitemap/0.9'>", "text/xml"),
        (b"<!DOCTYPE html><html>", "text/html"),
        (b"\n\n<html lang='en'>", "text/html"),
        (b"<HEAD><title>x</title>", "text/html"),
        (b"<!-- generated --><div>", "text/html"),
        (b'{"images": []}', "application/json"),
        (b"[1, 2]", "application/json"),
        (b"User-agent: *\nDisallow: /\n", "text/plain"),
        ("caf\u00e9 cr\u00e8me".encode()[:-1], "text/plain"),  # cut inside a character
        (b"\x00\x01\x02\x03binary", None),
        (b"", None),
        (b"BM not a bitmap at all, just text", "text/plain"),
        (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic", None),
        (b"\x00\x00\x00\x1cftypmif1\x00\x00\x00\x00mif1avifmiaf", "image/avif"),
    ],
)
def test_leading_bytes_decide(head, expected):
    assert sniff_type(head) == expected
