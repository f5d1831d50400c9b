"""How the shipped starter vehicle model does on the drifted advertiser style, against ordinary samples.

    python -m classifier.synth.measure_drift --n 300 [--learnability]

Runs the product's real pipeline (``classifier.runtime.Pipeline``: JPEG bytes -> decode -> exported
detector -> crop of the biggest vehicle -> vehicle classifier) on ``--n`` drifted samples
(``classifier.synth.drifted_sample``, all Dealer) and on ``--n`` ordinary Dealer/Stock samples
(``vehicle_sample``, half each, seeds in the starter models' held-out test range), and prints the
image_type and color accuracy of each.

``--learnability`` also checks that the drift is learnable from the model's own features: it reads the
512-d penultimate features (the input of the final Gemm of ``image_type``) on the same detector crops,
fits a multinomial logistic regression (a new last layer) on 200 drifted + 400 ordinary vehicle samples
(Dealer/Stock/Placeholder as the generator mixes them) and prints its accuracy on held-out drifted and
ordinary samples.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import onnx
from PIL import Image

from classifier.preprocess import batch, to_tensor
from classifier.runtime import ClassifierModel, DetectorModel, Pipeline, make_session
from classifier.synth import IMAGE_TYPES, Sample, drifted_sample, vehicle_sample
from classifier.training.evaluate import load_classifier, load_detector
from classifier.training.samples import jpeg_bytes

MODELS = Path(__file__).resolve().parent.parent / "starter_models"
FEATURES = "/embedding/embedding.1/HardSwish_output_0"  # input of the final Gemm producing image_type
ORDINARY_SEEDS = 5_000_000  # the starter models' held-out test range (training/train.py `_seeds`)
DRIFT_SEEDS = 0
HELD_OUT = 1_000_000  # offset of the learnability check's held-out seeds
BATCH = 32


@dataclass
class Item:
    jpeg: bytes
    image_type: str
    color: str


def _item(sample: Sample) -> Item:
    return Item(jpeg_bytes(sample.image), sample.image_type, sample.color)


def _drifted(seed: int) -> Item:
    return _item(drifted_sample(seed))


def _ordinary(seed: int) -> Item:
    """A Dealer (even seeds) or Stock (odd seeds) sample."""
    return _item(vehicle_sample(seed, image_type="Dealer" if seed % 2 == 0 else "Stock"))


def _ordinary_mix(seed: int) -> Item:
    """A vehicle sample as the generator mixes them (Dealer, Stock, Placeholder)."""
    return _item(vehicle_sample(seed))


def generate(make: Callable[[int], Item], seeds: Sequence[int], workers: int) -> list[Item]:
    if workers <= 1:
        return [make(seed) for seed in seeds]
    with get_context("fork").Pool(workers) as pool:
        return pool.map(make, seeds, chunksize=8)


@dataclass
class Scored:
    image_type: list[str]
    color: list[str]
    dealer_score: list[float]
    crops: list[tuple[Image.Image, tuple[int, int, int, int] | None]]


def score(pipeline: Pipeline, items: Sequence[Item]) -> Scored:
    """The pipeline's tags on the detector's crop, as in production."""
    out = Scored([], [], [], [])
    for start in range(0, len(items), BATCH):
        decoded = [pipeline.decode(item.jpeg) for item in items[start : start + BATCH]]
        for image, result in zip(decoded, pipeline.run(decoded), strict=True):
            if result.errors:
                raise RuntimeError(f"pipeline failed: {result.errors}")
            out.image_type.append(result.tags["image_type"].label)
            out.color.append(result.tags["color"].label)
            scores = result.tags["image_type"].scores
            out.dealer_score.append(float(scores.get("Dealer", 0.0)))
            out.crops.append((image.image, result.crop))
    return out


def accuracy(truth: Sequence[str], predicted: Sequence[str]) -> float:
    pairs = [(t, p) for t, p in zip(truth, predicted, strict=True) if t]
    return sum(t == p for t, p in pairs) / max(1, len(pairs))


def load_pipeline(models: Path = MODELS) -> tuple[Pipeline, ClassifierModel, DetectorModel]:
    classifier = load_classifier(models, "vehicle")
    detector = load_detector(models)
    return Pipeline([classifier], detector), classifier, detector


def measure(n: int, *, workers: int = 2, models: Path = MODELS) -> dict[str, float]:
    """Starter accuracies on ``n`` drifted and ``n`` ordinary Dealer/Stock samples."""
    pipeline, _, _ = load_pipeline(models)
    drifted = generate(_drifted, range(DRIFT_SEEDS, DRIFT_SEEDS + n), workers)
    ordinary = generate(_ordinary, range(ORDINARY_SEEDS, ORDINARY_SEEDS + n), workers)
    d, o = score(pipeline, drifted), score(pipeline, ordinary)
    return {
        "drifted_image_type": accuracy([i.image_type for i in drifted], d.image_type),
        "drifted_color": accuracy([i.color for i in drifted], d.color),
        "drifted_called_stock": d.image_type.count("Stock") / max(1, n),
        "ordinary_image_type": accuracy([i.image_type for i in ordinary], o.image_type),
        "ordinary_color": accuracy([i.color for i in ordinary], o.color),
    }


def feature_session(models: Path = MODELS) -> object:
    """The vehicle model with its penultimate features as an extra output."""
    model = onnx.load(str(models / "vehicle.onnx"))
    model.graph.output.append(onnx.helper.make_tensor_value_info(FEATURES, onnx.TensorProto.FLOAT, None))
    return make_session(model.SerializeToString())


def features(session: object, classifier: ClassifierModel, scored: Scored) -> np.ndarray:
    spec = classifier.contract.input
    rows = []
    for start in range(0, len(scored.crops), BATCH):
        tensors = batch([to_tensor(np.asarray(img), spec, box=box) for img, box in scored.crops[start : start + BATCH]])
        (values,) = session.run([FEATURES], {spec.name: tensors})  # type: ignore[attr-defined]
        rows.append(np.asarray(values, dtype=np.float64).reshape(len(tensors), -1))
    return np.concatenate(rows)


def fit_softmax(x: np.ndarray, y: np.ndarray, classes: int, *, l2: float = 1e-3) -> Callable[[np.ndarray], np.ndarray]:
    """Multinomial logistic regression (standardised inputs, L2), fitted with L-BFGS; returns a predictor."""
    from scipy.optimize import minimize

    mean, std = x.mean(axis=0), x.std(axis=0) + 1e-6
    z = (x - mean) / std
    n, d = z.shape
    onehot = np.eye(classes)[y]

    def loss(flat: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = flat[: d * classes].reshape(d, classes), flat[d * classes :]
        logits = z @ w + b
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        value = -np.sum(onehot * np.log(p + 1e-12)) / n + l2 * np.sum(w * w)
        grad = (p - onehot) / n
        return float(value), np.concatenate([(z.T @ grad + 2 * l2 * w).ravel(), grad.sum(axis=0)])

    result = minimize(loss, np.zeros(d * classes + classes), jac=True, method="L-BFGS-B", options={"maxiter": 500})
    w, b = result.x[: d * classes].reshape(d, classes), result.x[d * classes :]
    return lambda xs: np.argmax(((xs - mean) / std) @ w + b, axis=1)


def learnability(*, workers: int = 2, train_drifted: int = 200, train_ordinary: int = 400, test: int = 200,
                 models: Path = MODELS) -> dict[str, float]:  # fmt: skip
    """A new image_type layer fitted on the model's own features: held-out accuracies."""
    pipeline, classifier, _ = load_pipeline(models)
    session = feature_session(models)
    base = DRIFT_SEEDS + HELD_OUT
    sets = {
        "train_drifted": generate(_drifted, range(base, base + train_drifted), workers),
        "train_ordinary": generate(
            _ordinary_mix, range(ORDINARY_SEEDS + HELD_OUT, ORDINARY_SEEDS + HELD_OUT + train_ordinary), workers
        ),
        "test_drifted": generate(_drifted, range(base + 2 * HELD_OUT, base + 2 * HELD_OUT + test), workers),
        "test_ordinary": generate(
            _ordinary_mix, range(ORDINARY_SEEDS + 2 * HELD_OUT, ORDINARY_SEEDS + 2 * HELD_OUT + test), workers
        ),
    }
    scored = {name: score(pipeline, items) for name, items in sets.items()}
    feats = {name: features(session, classifier, s) for name, s in scored.items()}
    labels = {name: np.array([IMAGE_TYPES.index(i.image_type) for i in items]) for name, items in sets.items()}
    predict = fit_softmax(
        np.concatenate([feats["train_drifted"], feats["train_ordinary"]]),
        np.concatenate([labels["train_drifted"], labels["train_ordinary"]]),
        len(IMAGE_TYPES),
    )
    figures = {}
    for name in ("test_drifted", "test_ordinary"):
        figures[f"retrained_{name}"] = float(np.mean(predict(feats[name]) == labels[name]))
        truth = [i.image_type for i in sets[name]]
        figures[f"starter_{name}"] = accuracy(truth, scored[name].image_type)
    return figures


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=300, help="drifted and ordinary samples each")
    parser.add_argument("--workers", type=int, default=2, help="processes generating images")
    parser.add_argument("--learnability", action="store_true", help="also fit a new last layer on the features")
    args = parser.parse_args(argv)
    out = sys.stdout
    m = measure(args.n, workers=args.workers)
    out.write(f"starter vehicle model, real pipeline (detector crop), n={args.n} each\n")
    out.write(f"  drifted (white booth, all Dealer): image_type accuracy {m['drifted_image_type']:.3f}")
    out.write(f"  (called Stock {m['drifted_called_stock']:.3f})  color accuracy {m['drifted_color']:.3f}\n")
    out.write(f"  ordinary Dealer/Stock:             image_type accuracy {m['ordinary_image_type']:.3f}")
    out.write(f"  color accuracy {m['ordinary_color']:.3f}\n")
    if args.learnability:
        f = learnability(workers=args.workers)
        out.write("learnability: new image_type layer on the 512-d penultimate features (LR, L-BFGS)\n")
        out.write("  trained on 200 drifted + 400 ordinary (Dealer/Stock/Placeholder), tested on 200 held-out each\n")
        out.write(
            f"  held-out drifted:  retrained {f['retrained_test_drifted']:.3f}"
            f"  starter {f['starter_test_drifted']:.3f}\n"
        )
        out.write(
            f"  held-out ordinary: retrained {f['retrained_test_ordinary']:.3f}"
            f"  starter {f['starter_test_ordinary']:.3f}\n"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
