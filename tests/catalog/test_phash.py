"""catalog.imaging.phash_hex is imagehash.phash, bit for bit (the stored hashes were made with imagehash): compared
on photos of the generated inventory, stock renders, flat pictures and noise."""

import imagehash
import numpy as np
import pytest
from PIL import Image

from catalog.imaging import phash_distance, phash_hex
from catalog.inventory_server import make_inventory_images


def pictures() -> list[Image.Image]:
    import io

    rng = np.random.default_rng(5)
    made = [Image.open(io.BytesIO(data)).convert("RGB") for data in make_inventory_images(60, seed=3)]
    made += [Image.fromarray(rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)) for _ in range(40)]
    made += [Image.new("RGB", (320, 240), color) for color in [(255, 255, 255), (0, 0, 0), (200, 30, 30)]]
    return made


def gradients() -> list[Image.Image]:
    """Pictures whose low frequencies are mostly exactly zero: which of those count as above the median (zero) is
    rounding noise in either DCT."""
    gradient = np.tile(np.linspace(0, 255, 320, dtype=np.uint8), (240, 1))
    return [Image.fromarray(gradient), Image.fromarray(gradient.T.copy())]


@pytest.mark.parametrize("size", [(320, 240), (240, 320), (97, 61)])
def test_the_phash_is_imagehashs_bit_for_bit(size):
    for picture in pictures():
        thumbnail = picture.resize(size)
        assert phash_hex(thumbnail) == str(imagehash.phash(thumbnail))
    for picture in gradients():
        thumbnail = picture.resize(size)
        assert phash_distance(phash_hex(thumbnail), str(imagehash.phash(thumbnail))) <= 2
