import io
import time

import numpy as np
import pytest
from PIL import Image

from classifier.synth import (
    COLORS,
    IMAGE_TYPES,
    INTENT_LABELS,
    SENSITIVE_LABELS,
    Sample,
    dealer_photo_jpeg,
    product_sample,
    sample,
    vehicle_sample,
)
from classifier.synth.sheet import contact_sheet

SMALL = (160, 120)


def _area(box: tuple[int, int, int, int]) -> int:
    return (box[2] - box[0]) * (box[3] - box[1])


def _check_labels(s: Sample, size: tuple[int, int]) -> None:
    assert s.image.mode == "RGB"
    assert s.image.size == size
    assert s.intent in INTENT_LABELS
    assert s.sensitive in SENSITIVE_LABELS
    if s.image_type:
        assert s.image_type in IMAGE_TYPES
        assert s.intent == "Tools, Vehicles, Electronics & Appliances" or s.image_type == "Placeholder"
        assert s.sensitive == "not sensitive"
    else:
        assert s.color == ""
        assert s.box is None
        assert s.boxes == ()
    if s.image_type in ("Dealer", "Stock"):
        assert s.color in COLORS
        assert s.box is not None
    if s.image_type == "Placeholder":
        assert s.color == ""
        assert s.intent == "No Shopping Intent"
    if s.sensitive == "sensitive":
        assert s.intent in ("Tools, Vehicles, Electronics & Appliances", "No Shopping Intent")
    if s.box is not None:
        assert s.boxes[0] == s.box
    for box in s.boxes:
        x0, y0, x1, y1 = box
        assert 0 <= x0 < x1 <= size[0]
        assert 0 <= y0 < y1 <= size[1]
        assert _area(box) <= _area(s.boxes[0])


@pytest.mark.parametrize(
    "make",
    [
        lambda seed: sample(seed, size=SMALL),
        lambda seed: vehicle_sample(seed, image_type="Dealer", size=SMALL),
        lambda seed: vehicle_sample(seed, image_type="Stock", size=SMALL),
        lambda seed: vehicle_sample(seed, image_type="Placeholder", size=SMALL),
        lambda seed: product_sample(seed, size=SMALL),
    ],
)
def test_same_seed_same_image(make):
    for seed in (0, 7, 12345):
        a, b = make(seed), make(seed)
        assert a.image.tobytes() == b.image.tobytes()
        assert (a.image_type, a.color, a.intent, a.sensitive, a.boxes) == (
            b.image_type,
            b.color,
            b.intent,
            b.sensitive,
            b.boxes,
        )
    assert make(1).image.tobytes() != make(2).image.tobytes()


def test_labels_valid_and_every_label_reached_by_sample():
    seen_types, seen_intents, seen_sensitive, seen_colors = set(), set(), set(), set()
    for seed in range(300):
        s = sample(seed, size=(96, 72))
        _check_labels(s, (96, 72))
        seen_types.add(s.image_type)
        seen_intents.add(s.intent)
        seen_sensitive.add(s.sensitive)
        seen_colors.add(s.color)
    assert seen_types == {"", *IMAGE_TYPES}
    assert seen_intents == set(INTENT_LABELS)
    assert seen_sensitive == set(SENSITIVE_LABELS)
    assert seen_colors == {"", *COLORS}


@pytest.mark.parametrize("image_type", IMAGE_TYPES)
def test_image_type_on_request(image_type):
    for seed in range(6):
        s = vehicle_sample(seed, image_type=image_type, size=SMALL)
        assert s.image_type == image_type
        _check_labels(s, SMALL)


def test_every_color_on_request():
    for i, color in enumerate(COLORS):
        for image_type in ("Dealer", "Stock", None):
            s = vehicle_sample(i, image_type=image_type, color=color, size=SMALL)
            assert s.color == color
            assert s.image_type in ("Dealer", "Stock")
            _check_labels(s, SMALL)


def test_every_intent_on_request():
    for intent in INTENT_LABELS:
        for seed in range(8):
            s = product_sample(seed, intent=intent, size=SMALL)
            assert s.intent == intent
            _check_labels(s, SMALL)


def test_unknown_labels_are_refused():
    with pytest.raises(ValueError):
        vehicle_sample(0, image_type="Photo")
    with pytest.raises(ValueError):
        vehicle_sample(0, color="Silver")
    with pytest.raises(ValueError):
        product_sample(0, intent="Food")


def test_dealer_scenes_keep_the_biggest_box_first():
    several = 0
    for seed in range(40):
        s = vehicle_sample(seed, image_type="Dealer", size=SMALL)
        _check_labels(s, SMALL)
        several += len(s.boxes) > 1
    assert several > 10


def _corners(img: Image.Image, frac: float = 0.06) -> list[np.ndarray]:
    a = np.asarray(img, dtype=float)
    h, w = a.shape[:2]
    k, m = max(2, int(h * frac)), max(2, int(w * frac))
    return [
        a[:k, :m].mean(axis=(0, 1)),
        a[:k, -m:].mean(axis=(0, 1)),
        a[-k:, :m].mean(axis=(0, 1)),
        a[-k:, -m:].mean(axis=(0, 1)),
    ]


def test_stock_corners_are_white_and_dealer_corners_are_not():
    for seed in range(12):
        stock = _corners(vehicle_sample(seed, image_type="Stock", size=SMALL).image)
        assert all(c.min() > 240 for c in stock[:2]), stock
        assert all(c.min() > 220 for c in stock), stock
        dealer = _corners(vehicle_sample(seed, image_type="Dealer", size=SMALL).image)
        assert sum(c.min() > 235 for c in dealer) == 0, dealer


def _body_mean(s: Sample) -> np.ndarray:
    assert s.box is not None
    x0, y0, x1, y1 = s.box
    w, h = x1 - x0, y1 - y0
    body = np.asarray(s.image, dtype=float)[
        y0 + int(h * 0.55) : y0 + int(h * 0.75), x0 + int(w * 0.35) : x0 + int(w * 0.65)
    ]
    return body.reshape(-1, 3).mean(axis=0)


@pytest.mark.parametrize(("color", "channel"), [("Red", 0), ("Green", 1), ("Blue", 2)])
def test_stock_car_body_has_its_colour(color, channel):
    for seed in range(8):
        mean = _body_mean(vehicle_sample(seed, image_type="Stock", color=color, kind="car", size=(320, 240)))
        others = [mean[i] for i in range(3) if i != channel]
        assert mean[channel] > max(others) + 15, (seed, mean)


def test_placeholders_have_no_color_and_flat_pixels():
    for seed in range(10):
        s = vehicle_sample(seed, image_type="Placeholder", size=SMALL)
        assert s.color == ""
        assert s.intent == "No Shopping Intent"
        assert s.boxes == ((s.box,) if s.box else ())


def test_dealer_photo_jpeg_is_a_jpeg_of_the_asked_size():
    data = dealer_photo_jpeg(3, size=(400, 300))
    assert data[:2] == b"\xff\xd8"
    with Image.open(io.BytesIO(data)) as img:
        assert img.format == "JPEG"
        assert img.size == (400, 300)


def test_contact_sheet(tmp_path):
    sheet = contact_sheet([sample(seed, size=SMALL) for seed in range(16)], columns=8, cell=(80, 60))
    sheet.save(tmp_path / "sheet.png")
    assert sheet.size[0] == 8 * 80


def test_print_timings(capsys):
    lines = []
    for size in ((320, 240), (640, 480)):
        for name in (*IMAGE_TYPES, "product"):
            start = time.perf_counter()
            for seed in range(5):
                if name == "product":
                    product_sample(seed, size=size)
                else:
                    vehicle_sample(seed, image_type=name, size=size)
            lines.append(f"synth {size[0]}x{size[1]} {name}: {(time.perf_counter() - start) / 5 * 1000:.1f} ms")
    with capsys.disabled():
        print("\n" + "\n".join(lines))  # noqa: T201
