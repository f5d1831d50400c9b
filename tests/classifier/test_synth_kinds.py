"""The generator's vehicle kinds (issue 20): every kind in every style, each box's kind beside it, and the rarer
kinds drawn now and then in an ordinary inventory."""

from collections import Counter

import pytest

from classifier.contract import KIND_OF_CLASS, VEHICLE_KINDS
from classifier.synth import COLORS, drifted_sample, sample, vehicle_sample
from classifier.synth.common import Rand
from classifier.synth.vehicles import KIND_OF_SHAPE, RARE_KINDS, RARE_SHARE, SHAPE_NAMES, main_shape

SMALL = (160, 120)


@pytest.mark.parametrize("kind", VEHICLE_KINDS)
@pytest.mark.parametrize(
    "make",
    [
        lambda seed, kind: vehicle_sample(seed, image_type="Dealer", kind=kind, size=SMALL),
        lambda seed, kind: vehicle_sample(seed, image_type="Stock", kind=kind, size=SMALL),
        lambda seed, kind: drifted_sample(seed, kind=kind, size=SMALL),
    ],
    ids=["dealer", "stock", "drifted"],
)
def test_every_kind_is_drawn_in_every_style(make, kind):
    for seed in range(6):
        s = make(seed, kind)
        assert s.kind == kind
        assert s.box is not None
        assert s.box == s.boxes[0]
        assert s.color in COLORS
        assert len(s.kinds) == len(s.boxes)


def test_each_box_has_a_kind_and_the_main_vehicle_is_the_first():
    kinds_seen: Counter[str] = Counter()
    for seed in range(400):
        s = sample(seed, size=SMALL)
        assert len(s.kinds) == len(s.boxes)
        assert set(s.kinds) <= set(VEHICLE_KINDS)
        assert s.kind == (s.kinds[0] if s.boxes else "")
        kinds_seen.update(s.kinds)
    assert set(kinds_seen) == set(VEHICLE_KINDS)  # background cars included: every kind, cars the most
    assert kinds_seen.most_common(1)[0][0] == "car"


def test_an_ordinary_inventory_has_the_rarer_kinds_now_and_then():
    main = Counter(vehicle_sample(seed, image_type="Stock", size=(64, 48)).kind for seed in range(600))
    rare = sum(main[kind] for kind in RARE_KINDS if kind != "truck") + sum(
        1 for seed in range(600) if main_shape(Rand([seed, 0x4B1D])) == "box_truck"
    )
    assert abs(rare / 600 - RARE_SHARE) < 0.06
    assert main["car"] > main["motorcycle"] > 0
    assert main["bus_rv"] > 0


def test_the_same_seed_draws_the_same_vehicle_and_a_named_kind_changes_it():
    a, b = vehicle_sample(11, size=SMALL), vehicle_sample(11, size=SMALL)
    assert a.image.tobytes() == b.image.tobytes()
    assert a.kinds == b.kinds
    named = vehicle_sample(11, image_type=a.image_type or None, kind="motorcycle", size=SMALL)
    assert named.kind == "motorcycle"


def test_an_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="unknown vehicle kind 'tank'"):
        vehicle_sample(1, kind="tank")


def test_shapes_and_detector_classes_map_onto_the_vehicle_kinds():
    assert set(KIND_OF_SHAPE.values()) == set(VEHICLE_KINDS)
    assert {KIND_OF_SHAPE[shape] for shape in SHAPE_NAMES} == {"car", "van_suv", "truck"}  # ordinary draws
    pytest.importorskip("torch")
    from classifier.training.train import DETECTOR_CONTRACT

    assert {KIND_OF_CLASS[name] for name in DETECTOR_CONTRACT.classes} == set(VEHICLE_KINDS)
