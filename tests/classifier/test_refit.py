"""Refitting a head: on the shipped vehicle starter model, a hand-built MatMul + Add graph and synthetic features."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from classifier.contract import ClassifierContract, parse_contract
from classifier.preprocess import batch, to_tensor
from classifier.runtime import ClassifierModel, make_session
from classifier.synth import IMAGE_TYPES, vehicle_sample
from classifier.training.refit import (
    CandidateSettings,
    FeatureExtractor,
    RefitError,
    default_grid,
    evaluate,
    find_head,
    fit_head,
    fit_with_settings,
    predict,
    write_refit_model,
)

STARTERS = Path(__file__).resolve().parents[2] / "classifier" / "starter_models"
VEHICLE_ONNX = STARTERS / "vehicle.onnx"
EMBEDDING = "/embedding/embedding.1/HardSwish_output_0"


@dataclass
class Vehicles:
    features: np.ndarray  # [N, 512]
    image_type: np.ndarray  # true label index per image
    tensors: np.ndarray  # the model inputs, as the pipeline makes them


@pytest.fixture(scope="module")
def contract() -> ClassifierContract:
    parsed = parse_contract((STARTERS / "vehicle.json").read_text())
    assert isinstance(parsed, ClassifierContract)
    return parsed


@pytest.fixture(scope="module")
def vehicles(contract) -> Vehicles:
    """160 generated vehicle images (cropped to their main vehicle, as the pipeline would): features and labels."""
    samples = [vehicle_sample(seed, size=(320, 240)) for seed in range(160)]
    extractor = FeatureExtractor(VEHICLE_ONNX, "image_type")
    calls: list[tuple[int, int]] = []
    features = extractor.features_of_images(
        [s.image for s in samples], contract, boxes=[s.box for s in samples], progress=lambda d, t: calls.append((d, t))
    )
    assert calls == [(32, 160), (64, 160), (96, 160), (128, 160), (160, 160)]
    tensors = batch([to_tensor(s.image, contract.input, box=s.box) for s in samples[:8]])
    return Vehicles(features, np.array([IMAGE_TYPES.index(s.image_type) for s in samples]), tensors)


def _outputs(model: bytes | Path, tensors: np.ndarray) -> dict[str, np.ndarray]:
    session = make_session(model)
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, {"image": tensors}), strict=True))


# --- find_head ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("output", "classes"), [("image_type", 3), ("color", 12)])
def test_find_head_on_the_vehicle_starter_model(output, classes):
    head = find_head(onnx.load(VEHICLE_ONNX), output)

    assert head.features == EMBEDDING
    assert head.weight.shape == (classes, 512)
    assert head.bias.shape == (classes,)
    assert head.weight_name == f"heads.{0 if output == 'image_type' else 1}.weight"
    assert not head.stored_transposed  # Gemm transB=1: stored as [classes, features] already


def test_find_head_refuses_a_non_linear_output():
    model = onnx.load(VEHICLE_ONNX)
    # The embedding is a Gemm followed by HardSwish: the HardSwish output is not a linear layer.
    model.graph.output.append(helper.make_tensor_value_info(EMBEDDING, TensorProto.FLOAT, None))

    with pytest.raises(RefitError, match="not a linear layer on features: cannot refit"):
        find_head(model, EMBEDDING)
    with pytest.raises(RefitError, match="not a linear layer"):
        find_head(model, "no_such_output")


def _matmul_add_model(*, share_weight: bool = False) -> onnx.ModelProto:
    """x [N, 4] -> Relu -> MatMul(W [4, 3]) + b -> "logits"; optionally a second node also reads W."""
    rng = np.random.default_rng(1)
    nodes = [
        helper.make_node("Relu", ["x"], ["hidden"]),
        helper.make_node("MatMul", ["hidden", "W"], ["product"]),
        helper.make_node("Add", ["b", "product"], ["logits"]),  # bias first: either order is a linear layer
    ]
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 3])]
    if share_weight:
        nodes.append(helper.make_node("MatMul", ["x", "W"], ["other"]))
        outputs.append(helper.make_tensor_value_info("other", TensorProto.FLOAT, ["N", 3]))
    graph = helper.make_graph(
        nodes,
        "matmul_add",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        outputs,
        initializer=[
            numpy_helper.from_array(rng.normal(size=(4, 3)).astype(np.float32), "W"),
            numpy_helper.from_array(rng.normal(size=(1, 3)).astype(np.float32), "b"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_matmul_add_head_is_found_refitted_and_written_in_its_own_layout():
    model = _matmul_add_model()
    head = find_head(model, "logits")
    assert (head.features, head.weight_name, head.bias_name) == ("hidden", "W", "b")
    assert head.stored_transposed
    assert head.bias_shape == (1, 3)
    np.testing.assert_array_equal(head.weight, numpy_helper.to_array(model.graph.initializer[0]).T)

    x = np.random.default_rng(2).normal(size=(5, 4)).astype(np.float32)
    extractor = FeatureExtractor(model.SerializeToString(), "logits")
    features, outputs = extractor.run(x)
    np.testing.assert_allclose(features, np.maximum(x, 0), rtol=1e-6)
    np.testing.assert_allclose(features @ head.weight.T + head.bias, outputs["logits"], rtol=1e-5, atol=1e-6)

    new_weight, new_bias = head.weight * 2 + 1, head.bias - 1
    written = write_refit_model(model.SerializeToString(), "logits", new_weight, new_bias)
    (logits,) = make_session(written).run(["logits"], {"x": x})
    np.testing.assert_allclose(logits, features @ new_weight.T + new_bias, rtol=1e-5, atol=1e-5)


def test_a_weight_read_by_another_node_is_refused():
    with pytest.raises(RefitError, match="also read by node"):
        find_head(_matmul_add_model(share_weight=True), "logits")


# --- features and writing on the real model ----------------------------------------------------------------


def test_features_through_the_original_head_reproduce_the_model(contract, vehicles):
    model = ClassifierModel.load(VEHICLE_ONNX, contract)
    head = find_head(onnx.load(VEHICLE_ONNX), "image_type")
    features = FeatureExtractor(VEHICLE_ONNX, "image_type").features(vehicles.tensors)

    expected = np.array([[r.scores[label] for label in IMAGE_TYPES] for r in model.run(vehicles.tensors)["image_type"]])
    np.testing.assert_allclose(predict(features, head.weight, head.bias), expected, atol=1e-4)
    # features_of_images made the same features as the pipeline's own tensors do.
    np.testing.assert_allclose(vehicles.features[:8], features, atol=1e-5)


def test_writing_the_original_weights_changes_nothing(vehicles):
    head = find_head(onnx.load(VEHICLE_ONNX), "image_type")
    written = write_refit_model(VEHICLE_ONNX, "image_type", head.weight, head.bias)

    before, after = _outputs(VEHICLE_ONNX, vehicles.tensors), _outputs(written, vehicles.tensors)
    assert list(before) == list(after) == ["image_type", "color"]
    for name in before:
        np.testing.assert_array_equal(before[name], after[name])


def test_written_weights_give_the_outputs_predict_computes(vehicles):
    head = find_head(onnx.load(VEHICLE_ONNX), "image_type")
    rng = np.random.default_rng(3)
    new_weight = head.weight + rng.normal(scale=0.05, size=head.weight.shape).astype(np.float32)
    new_bias = head.bias + np.array([0.5, -0.5, 0.0], dtype=np.float32)

    written = write_refit_model(VEHICLE_ONNX.read_bytes(), "image_type", new_weight, new_bias)
    before, after = _outputs(VEHICLE_ONNX, vehicles.tensors), _outputs(written, vehicles.tensors)

    assert not np.allclose(before["image_type"], after["image_type"], atol=1e-3)
    np.testing.assert_array_equal(before["color"], after["color"])  # the other head is untouched
    np.testing.assert_allclose(
        predict(vehicles.features[:8], new_weight, new_bias),
        predict(after["image_type"], np.eye(3), np.zeros(3)),  # softmax of the model's logits
        atol=1e-4,
    )
    assert [o.name for o in onnx.load_from_string(written).graph.output] == ["image_type", "color"]


def test_write_refuses_the_wrong_shape():
    with pytest.raises(RefitError, match="needs weight"):
        write_refit_model(VEHICLE_ONNX, "image_type", np.zeros((4, 512)), np.zeros(4))


def test_a_refit_learns_a_changed_labelling_the_original_head_gets_wrong(vehicles):
    """Staff decide stock renders count as Dealer images: the refit head follows, the original cannot."""
    dealer, stock = IMAGE_TYPES.index("Dealer"), IMAGE_TYPES.index("Stock")
    relabelled = np.where(vehicles.image_type == stock, dealer, vehicles.image_type)
    assert (vehicles.image_type == stock).sum() >= 30
    train, test = slice(0, 110), slice(110, None)
    head = find_head(onnx.load(VEHICLE_ONNX), "image_type")

    weight, bias = fit_with_settings(vehicles.features[train], relabelled[train], head, default_grid(1)[0])

    before = evaluate(relabelled[test], predict(vehicles.features[test], head.weight, head.bias).argmax(1), IMAGE_TYPES)
    after = evaluate(relabelled[test], predict(vehicles.features[test], weight, bias).argmax(1), IMAGE_TYPES)
    assert before["accuracy"] < 0.8  # every Stock image is now wrong for the original head
    assert after["accuracy"] >= 0.9  # 0.94 with the starter models that know five vehicle kinds (0.95+ before)
    assert after["accuracy"] > before["accuracy"] + 0.15


# --- fit_head on synthetic features ------------------------------------------------------------------------


def _blobs(n: int, classes: int, features: int, *, seed: int, spread: float = 1.0, sizes=None):
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=3.0, size=(classes, features))
    labels = rng.integers(0, classes, n) if sizes is None else np.repeat(np.arange(classes), sizes)
    return (centres[labels] + rng.normal(scale=spread, size=(len(labels), features))).astype(np.float32), labels


def test_fit_head_learns_a_separable_problem_and_is_deterministic():
    x, y = _blobs(600, 4, 16, seed=0)

    weight, bias = fit_head(x[:400], y[:400], 4, anchor=0.0, l2=1e-3, class_weight=None)
    again = fit_head(x[:400], y[:400], 4, anchor=0.0, l2=1e-3, class_weight=None)

    assert (predict(x[400:], weight, bias).argmax(1) == y[400:]).mean() > 0.95
    np.testing.assert_array_equal(weight, again[0])
    np.testing.assert_array_equal(bias, again[1])
    assert weight.dtype == bias.dtype == np.float32


def test_a_huge_anchor_keeps_the_parent_head():
    x, y = _blobs(300, 3, 8, seed=1)
    rng = np.random.default_rng(5)
    w0, b0 = rng.normal(size=(3, 8)), rng.normal(size=3)

    weight, bias = fit_head(x, y, 3, init_weight=w0, init_bias=b0, anchor=1e6, l2=0.0, class_weight=None)
    free, _ = fit_head(x, y, 3, init_weight=w0, init_bias=b0, anchor=0.0, l2=1e-3, class_weight=None)

    assert np.linalg.norm(weight - w0) < 1e-3
    assert np.linalg.norm(bias - b0) < 1e-3
    assert np.linalg.norm(free - w0) > 1.0


def test_balanced_class_weights_raise_the_minority_recall():
    # Overlapping classes, 20 to 1: unweighted, the fit sacrifices the rare class.
    x, y = _blobs(0, 2, 4, seed=2, spread=4.0, sizes=[1000, 50])

    plain = fit_head(x, y, 2, l2=1e-3, class_weight=None)
    balanced = fit_head(x, y, 2, l2=1e-3, class_weight="balanced")

    def minority_recall(head):
        return evaluate(y, predict(x, *head).argmax(1), ["common", "rare"])["per_class"]["rare"]["recall"]

    assert minority_recall(balanced) > minority_recall(plain) + 0.1


def test_pseudo_label_rows_weigh_what_the_settings_say():
    head = find_head(_matmul_add_model(), "logits")  # 3 classes on 4 features
    x, y = _blobs(300, 3, 4, seed=3)
    # The same images twice: once with their human labels, once as pseudo-labels that contradict them all.
    features, labels = np.r_[x, x], np.r_[y, (y + 1) % 3]
    pseudo = np.r_[np.zeros(300, dtype=bool), np.ones(300, dtype=bool)]

    def agreement_with_humans(pseudo_label_weight):
        settings = CandidateSettings(anchor=0.0, l2=1e-3, class_weight=None, pseudo_label_weight=pseudo_label_weight)
        weight, bias = fit_with_settings(features, labels, head, settings, pseudo=pseudo)
        return (predict(x, weight, bias).argmax(1) == y).mean()

    assert agreement_with_humans(0.1) > 0.9
    assert agreement_with_humans(10.0) < 0.1


# --- evaluate and the grid ---------------------------------------------------------------------------------


def test_evaluate_reports_exactly_the_agreed_fields():
    report = evaluate(
        [0, 0, 1, 2, 2, 2], ["Dealer", "Stock", "Stock", "Placeholder", "Placeholder", "Dealer"], IMAGE_TYPES
    )

    assert list(report) == ["accuracy", "macro_f1", "labels", "per_class", "confusion", "n"]
    assert report["n"] == 6
    assert report["accuracy"] == pytest.approx(4 / 6)
    assert report["labels"] == list(IMAGE_TYPES)
    assert report["confusion"] == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]
    assert report["per_class"]["Stock"] == {"precision": 0.5, "recall": 1.0, "f1": pytest.approx(2 / 3), "support": 1}


def test_default_grid_spans_four_decades_of_anchor_and_every_size_is_distinct():
    assert [s.anchor for s in default_grid()] == [0.001, 0.01, 0.1, 1.0]
    assert all(s.class_weight == "balanced" for s in default_grid())
    for n in range(1, 9):
        grid = default_grid(n)
        assert len(grid) == len(set(grid)) == n
    with pytest.raises(ValueError):
        default_grid(9)


def test_fit_head_refuses_bad_inputs():
    x, y = _blobs(20, 2, 3, seed=4)
    with pytest.raises(ValueError, match="labels must be in"):
        fit_head(x, y + 1, 2)
    with pytest.raises(ValueError, match="sample_weight"):
        fit_head(x, y, 2, sample_weight=np.zeros(20))
    with pytest.raises(ValueError, match="initial head"):
        fit_head(x, y, 2, init_weight=np.zeros((2, 4)))
