"""Builders of inventory documents for the tests."""

from __future__ import annotations

from collections.abc import Iterator

SITEMAP_NS = "http://www.sitemaps.org/schemas/sitemap/0.9"
IMAGE_NS = "http://www.google.com/schemas/sitemap-image/1.1"


def urlset(*entries: str, head: str = '<?xml version="1.0" encoding="UTF-8"?>\n') -> bytes:
    return (
        f'{head}<urlset xmlns="{SITEMAP_NS}" xmlns:image="{IMAGE_NS}">\n' + "\n".join(entries) + "\n</urlset>\n"
    ).encode()


def url_entry(loc: str, *images: str, extra: str = "") -> str:
    image_tags = "".join(f"<image:image><image:loc>{image}</image:loc></image:image>" for image in images)
    return f"<url><loc>{loc}</loc>{extra}{image_tags}</url>"


def big_sitemap(count: int) -> bytes:
    """A sitemap of ``count`` pages, every other one with two images."""
    parts = [f'<?xml version="1.0" encoding="UTF-8"?>\n<urlset xmlns="{SITEMAP_NS}" xmlns:image="{IMAGE_NS}">\n']
    for index in range(count):
        images = "".join(
            f"<image:image><image:loc>https://cdn.example.com/p/{index}/{n}.jpg</image:loc></image:image>"
            for n in range(1 + index % 2)
        )
        parts.append(
            f"  <url>\n    <loc>https://shop.example.com/p/{index}</loc>\n"
            f"    <lastmod>2024-05-01T10:00:00+00:00</lastmod>\n    {images}\n  </url>\n"
        )
    parts.append("</urlset>\n")
    return "".join(parts).encode()


def chunked(data: bytes, size: int = 1000) -> Iterator[bytes]:
    """Yield ``data`` in small pieces, as a streaming HTTP body would."""
    for start in range(0, len(data), size):
        yield data[start : start + size]
