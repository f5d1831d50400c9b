import numpy as np
import pytest
from PIL import Image

from classifier.contract import InputSpec
from classifier.preprocess import to_tensor
from classifier.yolo import Box, decode_yolov8, nms, to_image_coords, vehicle_crop
from tests.classifier.onnx_builders import yolo_output


def corners(box: Box) -> tuple[float, float, float, float]:
    return (box.x0, box.y0, box.x1, box.y1)


def test_decodes_centre_size_to_corners():
    output = yolo_output([(50, 40, 20, 10, 1, 0.9)], classes=3)

    (box,) = decode_yolov8(output, confidence=0.25, iou=0.45)

    assert corners(box) == (40, 35, 60, 45)
    assert box.score == pytest.approx(0.9)
    assert box.class_id == 1
    assert box.area == 200


def test_confidence_threshold():
    output = yolo_output([(10, 10, 4, 4, 0, 0.2), (50, 50, 4, 4, 0, 0.3), (90, 90, 4, 4, 0, 0.25)], classes=1)

    boxes = decode_yolov8(output, confidence=0.25, iou=0.45)

    assert [box.score for box in boxes] == [pytest.approx(0.3)]


def test_class_filter_uses_each_candidate_best_class():
    output = yolo_output([(10, 10, 4, 4, 0, 0.5), (50, 50, 4, 4, 2, 0.9), (90, 90, 4, 4, 1, 0.6)], classes=3)
    output[0, 4 + 0, 1] = 0.8  # the person-like box also scores 0.8 as class 0, but its best class is 2

    boxes = decode_yolov8(output, confidence=0.25, iou=0.45, classes=[0, 1])

    assert [(box.class_id, box.score) for box in boxes] == [(1, pytest.approx(0.6)), (0, pytest.approx(0.5))]


def test_nms_suppresses_overlaps_of_one_class_only():
    output = yolo_output(
        [
            (50, 50, 20, 20, 0, 0.7),  # [40, 60]
            (52, 50, 20, 20, 0, 0.9),  # IoU 0.82 with the first: it wins, the first goes
            (65, 50, 20, 20, 0, 0.5),  # IoU 0.14 with the winner: kept
            (50, 50, 20, 20, 1, 0.6),  # same place as the first but another class: kept
        ],
        classes=2,
    )

    boxes = decode_yolov8(output, confidence=0.25, iou=0.45)

    assert [(box.class_id, corners(box)) for box in boxes] == [
        (0, (42, 40, 62, 60)),
        (1, (40, 40, 60, 60)),
        (0, (55, 40, 75, 60)),
    ]
    assert [box.score for box in boxes] == sorted((box.score for box in boxes), reverse=True)


def test_nms_threshold_is_strict():
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 5]], dtype=np.float32)  # IoU exactly 0.5
    scores = np.array([0.9, 0.8], dtype=np.float32)

    assert nms(boxes, scores, 0.5).tolist() == [0, 1]
    assert nms(boxes, scores, 0.49).tolist() == [0]


def test_nothing_above_threshold_and_bad_shapes():
    assert decode_yolov8(yolo_output([(1, 1, 1, 1, 0, 0.1)], classes=1), confidence=0.25, iou=0.45) == []
    assert decode_yolov8(np.zeros((1, 6, 0), dtype=np.float32), confidence=0.25, iou=0.45) == []
    with pytest.raises(ValueError, match="batch of 1"):
        decode_yolov8(np.zeros((2, 6, 3)), confidence=0.25, iou=0.45)
    with pytest.raises(ValueError, match=r"\[1, 4\+classes, boxes\]"):
        decode_yolov8(np.zeros((1, 4, 3)), confidence=0.25, iou=0.45)


def test_accepts_an_output_without_the_batch_axis():
    output = yolo_output([(50, 40, 20, 10, 0, 0.9)], classes=1)

    assert decode_yolov8(output[0], confidence=0.25, iou=0.45) == decode_yolov8(output, confidence=0.25, iou=0.45)


def test_letterbox_mapping_back():
    # A 200x100 image letterboxed into 100x100: ratio 0.5, scaled to 100x50, 25 grey rows above.
    box = Box(10, 35, 50, 75, 0.9, 0)

    (mapped,) = to_image_coords([box], input_size=(100, 100), image_size=(200, 100), resize="letterbox")

    assert corners(mapped) == (20, 20, 100, 100)
    assert (mapped.score, mapped.class_id) == (0.9, 0)


def test_letterbox_mapping_matches_what_to_tensor_drew():
    # Draw a white rectangle, letterbox the image like the detector does, find it in the tensor, map it back.
    image = Image.new("RGB", (300, 120), (0, 0, 0))
    image.paste((255, 255, 255), (60, 30, 180, 90))
    spec = InputSpec("images", "NHWC", 64, 64, "uint8", "RGB", 1.0, (0, 0, 0), (1, 1, 1), "letterbox")
    tensor = to_tensor(image, spec)[0, ..., 0]
    rows, columns = np.nonzero(tensor > 200)
    found = Box(columns.min(), rows.min(), columns.max() + 1, rows.max() + 1, 1.0, 0)

    (mapped,) = to_image_coords([found], input_size=(64, 64), image_size=(300, 120), resize="letterbox")

    assert corners(mapped) == pytest.approx((60, 30, 180, 90), abs=5)


def test_stretch_mapping_back_and_clamping():
    boxes = [Box(10, 10, 20, 20, 0.5, 3), Box(-5, 40, 60, 55, 0.4, 3)]

    mapped = to_image_coords(boxes, input_size=(50, 100), image_size=(200, 200), resize="stretch")

    assert corners(mapped[0]) == (20, 40, 40, 80)
    assert corners(mapped[1]) == (0, 160, 120, 200)


def test_vehicle_crop_takes_the_biggest_box_with_its_margin_clamped():
    boxes = [Box(10, 10, 30, 30, 0.9, 0), Box(50, 50, 100, 90, 0.4, 2)]

    crop = vehicle_crop(boxes, image_size=(100, 100), margin=0.1)

    assert crop == (45, 46, 100, 94)  # 50x40 box grown by 5 and 4 on each side, right edge clamped


def test_vehicle_crop_rounds_outwards_and_breaks_ties_by_score():
    boxes = [Box(10.4, 10.6, 20.2, 20.5, 0.3, 0), Box(50.4, 50.6, 60.2, 60.5, 0.8, 1)]

    assert vehicle_crop(boxes, image_size=(100, 100), margin=0.0) == (50, 50, 61, 61)


def test_vehicle_crop_without_boxes():
    assert vehicle_crop([], image_size=(100, 100), margin=0.1) is None
    assert vehicle_crop([Box(5, 5, 5, 20, 0.9, 0)], image_size=(100, 100), margin=0.1) is None


def greedy_nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> list[int]:
    """The reference: greedy NMS written out (what the product did by hand before OpenCV's)."""
    order = list(np.argsort(-scores, kind="stable"))
    x0, y0, x1, y1 = boxes.T.astype(np.float64)
    areas = (x1 - x0) * (y1 - y0)
    keep: list[int] = []
    while order:
        best, order = order[0], order[1:]
        keep.append(int(best))
        survivors = []
        for other in order:
            inter = max(0.0, min(x1[best], x1[other]) - max(x0[best], x0[other])) * max(
                0.0, min(y1[best], y1[other]) - max(y0[best], y0[other])
            )
            union = areas[best] + areas[other] - inter
            if (inter / union if union > 0 else 0.0) <= iou:
                survivors.append(other)
        order = survivors
    return keep


@pytest.mark.parametrize("seed", range(20))
def test_opencv_nms_keeps_what_greedy_nms_keeps_per_class(seed):
    rng = np.random.default_rng(seed)
    count = 60
    x0, y0 = rng.uniform(0, 150, count), rng.uniform(0, 150, count)
    boxes = np.stack([x0, y0, x0 + rng.uniform(5, 60, count), y0 + rng.uniform(5, 60, count)], axis=1)
    scores = rng.permutation(np.linspace(0.3, 0.99, count)).astype(np.float32)  # no ties
    class_ids = rng.integers(0, 3, count)

    kept = nms(boxes, scores, 0.45, class_ids).tolist()

    expected = []
    for class_id in range(3):
        mine = np.flatnonzero(class_ids == class_id)
        expected += [int(mine[i]) for i in greedy_nms(boxes[mine], scores[mine], 0.45)]
    assert sorted(kept) == sorted(expected)
    assert [scores[i] for i in kept] == sorted((scores[i] for i in kept), reverse=True)  # best first
