"""The carry-forward threshold, measured: re-encodes and resizes of one photo stay within it, different
photos (even of the same generated kind) stay outside it."""

import io
import itertools

from django.conf import settings
from PIL import Image

from catalog.imaging import inspect_image, phash_distance
from catalog.inventory_server import make_inventory_images


def variant(data, *, quality, scale):
    image = Image.open(io.BytesIO(data))
    image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def test_reencodes_fall_within_the_threshold_and_other_photos_outside():
    photos = make_inventory_images(12, seed=77)
    hashes = [inspect_image(photo).phash for photo in photos]
    limit = settings.CARRY_FORWARD_MAX_DISTANCE

    same = [
        phash_distance(hashes[i], inspect_image(variant(photo, quality=q, scale=s)).phash)
        for i, photo in enumerate(photos)
        for q, s in ((95, 1.0), (60, 1.0), (75, 0.5), (40, 0.75))
    ]
    different = [phash_distance(a, b) for a, b in itertools.combinations(hashes, 2)]

    print(f"re-encodes: max {max(same)} bits; different photos: min {min(different)} bits")  # noqa: T201
    assert max(same) <= limit, sorted(same)
    assert min(different) > limit, sorted(different)[:5]
