"""Refit a classifier's last linear layer on cached penultimate features, and write it back as ONNX.

The cheap way to turn fixes into a better model (DESIGN.md, "The loop"): run the active model once per asset
up to its penultimate tensor (the embedding its heads read), cache those features, then fit a new head by
multinomial logistic regression from the current head's weights, with an L2-SP penalty that pulls toward
them so the candidate keeps what the model knew. The candidate is the same ONNX file with only that head's
initializers replaced: same inputs, outputs and contract.

No Django and no torch here: numpy, scipy, onnx and onnxruntime only, so it runs on any worker and in tests.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnx
from onnx import numpy_helper
from PIL import Image

from classifier.contract import ClassifierContract
from classifier.heads import activate
from classifier.preprocess import Decoded, batch, flatten_to_rgb, to_tensor
from classifier.runtime import CropBox, make_session
from classifier.training.metrics import classification_report
from core.errors import ApplicationError

BATCH = 32
ModelSource = bytes | str | Path
Progress = Callable[[int, int], None]
ClassWeight = Literal["balanced"] | None


class RefitError(ApplicationError):
    """A model's head cannot be refitted (not a linear layer on features, shared weights, ...)."""

    code = "refit_refused"


@dataclass(frozen=True)
class HeadLayer:
    """The linear layer that produces a head output: `output = features @ weight.T + bias`."""

    output: str
    features: str  # the penultimate tensor the layer reads (the embedding)
    weight_name: str
    bias_name: str
    weight: np.ndarray  # [classes, features], whatever the stored layout
    bias: np.ndarray  # [classes]
    stored_transposed: bool  # the initializer holds [features, classes] (Gemm transB=0, MatMul)
    bias_shape: tuple[int, ...]  # the initializer's own shape ([classes] or [1, classes])

    @property
    def n_classes(self) -> int:
        return int(self.weight.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.weight.shape[1])


def _load(source: ModelSource | onnx.ModelProto) -> onnx.ModelProto:
    if isinstance(source, onnx.ModelProto):
        return source
    if isinstance(source, bytes | bytearray):
        return onnx.load_from_string(bytes(source))
    return onnx.load(str(source))


def _all_nodes(graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    """Every node, including those of subgraphs (If/Loop bodies), which may read outer initializers too."""
    nodes = []
    for node in graph.node:
        nodes.append(node)
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                nodes += _all_nodes(attribute.g)
            elif attribute.type == onnx.AttributeProto.GRAPHS:
                for subgraph in attribute.graphs:
                    nodes += _all_nodes(subgraph)
    return nodes


def _attribute(node: onnx.NodeProto, name: str, default: Any) -> Any:
    for attribute in node.attribute:
        if attribute.name == name:
            return onnx.helper.get_attribute_value(attribute)
    return default


def find_head(model: onnx.ModelProto, output: str) -> HeadLayer:
    """The Gemm (or MatMul + Add) that produces `output`, with its input tensor and its weights.

    Raises RefitError when the output comes from anything else, when the weights are not float32
    initializers, or when another node also reads them (replacing them would change that node too).
    """
    graph = model.graph
    initializers = {tensor.name: tensor for tensor in graph.initializer}
    producers = {name: node for node in graph.node for name in node.output}
    not_linear = RefitError(f"head {output!r} is not a linear layer on features: cannot refit")
    node = producers.get(output)
    if node is None:
        raise not_linear
    layer_nodes = [node]
    if node.op_type == "Gemm":
        if len(node.input) < 3 or not node.input[2]:
            raise RefitError(f"head {output!r}: its Gemm has no bias: cannot refit")
        if _attribute(node, "transA", 0) != 0:
            raise not_linear
        if _attribute(node, "alpha", 1.0) != 1.0 or _attribute(node, "beta", 1.0) != 1.0:
            raise RefitError(f"head {output!r}: its Gemm scales by alpha/beta other than 1: cannot refit")
        features, weight_name, bias_name = node.input[0], node.input[1], node.input[2]
        transposed = _attribute(node, "transB", 0) == 0
    elif node.op_type == "Add":
        # MatMul(features, W[features, classes]) + bias, the bias on either side of the Add.
        matmuls = [producers.get(name) for name in node.input]
        pairs = [
            (matmul, other)
            for matmul, other in zip(matmuls, reversed(node.input), strict=True)
            if matmul is not None and matmul.op_type == "MatMul" and other in initializers
        ]
        if len(node.input) != 2 or len(pairs) != 1:
            raise not_linear
        matmul, bias_name = pairs[0]
        features, weight_name = matmul.input[0], matmul.input[1]
        transposed = True
        layer_nodes.append(matmul)
    else:
        raise not_linear
    if weight_name not in initializers or bias_name not in initializers:
        raise RefitError(f"head {output!r}: its weights are not stored initializers: cannot refit")
    stored_weight = initializers[weight_name]
    stored_bias = initializers[bias_name]
    for tensor in (stored_weight, stored_bias):
        if tensor.data_type != onnx.TensorProto.FLOAT:
            kind = onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type)
            raise RefitError(f"head {output!r}: initializer {tensor.name!r} is {kind}, only float32 can be refitted")
    readers = [n for n in _all_nodes(graph) if n not in layer_nodes and {weight_name, bias_name} & set(n.input)]
    if readers:
        raise RefitError(
            f"head {output!r}: its weights are also read by node {readers[0].name or readers[0].op_type!r}: "
            "cannot refit one without changing the other"
        )
    weight = numpy_helper.to_array(stored_weight).astype(np.float32)
    bias = numpy_helper.to_array(stored_bias).astype(np.float32)
    if weight.ndim != 2:
        raise not_linear
    if transposed:
        weight = weight.T
    if bias.size != weight.shape[0]:
        raise RefitError(f"head {output!r}: bias has {bias.size} values for {weight.shape[0]} classes: cannot refit")
    return HeadLayer(
        output=output,
        features=features,
        weight_name=weight_name,
        bias_name=bias_name,
        weight=np.ascontiguousarray(weight),
        bias=bias.reshape(-1),
        stored_transposed=transposed,
        bias_shape=tuple(int(d) for d in stored_bias.dims),
    )


class FeatureExtractor:
    """One session that returns a head's penultimate features (and the head outputs) for input tensors."""

    def __init__(self, model: ModelSource, output: str) -> None:
        proto = _load(model)
        self.head = find_head(proto, output)
        graph_outputs = [value.name for value in proto.graph.output]
        self.outputs = graph_outputs
        if self.head.features not in graph_outputs:
            # Shape inference gives the tensor's declared type and shape; without it an untyped-shape float
            # output is enough for onnxruntime, which then takes the shape it computes.
            inferred = onnx.shape_inference.infer_shapes(proto)
            known = {value.name: value for value in inferred.graph.value_info}
            value = known.get(self.head.features) or onnx.helper.make_tensor_value_info(
                self.head.features, onnx.TensorProto.FLOAT, None
            )
            proto.graph.output.append(value)
        self.session = make_session(proto.SerializeToString())
        self.input_name = self.session.get_inputs()[0].name
        shape = self.session.get_inputs()[0].shape
        # Some exports (TFLite conversions) fix the batch at 1: run those once per row.
        self._batch_of_one = bool(shape) and shape[0] == 1

    def run(self, tensors: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Features [N, D] (float32) and every graph output (the head outputs) for a batch of input tensors."""
        names = [self.head.features, *self.outputs]
        if self._batch_of_one and len(tensors) > 1:
            rows = [self.session.run(names, {self.input_name: tensors[i : i + 1]}) for i in range(len(tensors))]
            values = [np.concatenate(parts, axis=0) for parts in zip(*rows, strict=True)]
        else:
            values = self.session.run(names, {self.input_name: tensors})
        features = np.asarray(values[0], dtype=np.float32).reshape(len(tensors), -1)
        return features, dict(zip(self.outputs, values[1:], strict=True))

    def features(self, tensors: np.ndarray) -> np.ndarray:
        """Penultimate features [N, D] for tensors made by `preprocess.to_tensor` / `preprocess.batch`."""
        return self.run(tensors)[0]

    def features_of_images(
        self,
        images: Sequence[Image.Image | Decoded],
        contract: ClassifierContract,
        *,
        boxes: Sequence[CropBox | None] | None = None,
        progress: Progress | None = None,
    ) -> np.ndarray:
        """Features [N, D] of images preprocessed exactly as `runtime.Pipeline` does, 32 at a time.

        `boxes` are the vehicle crops (cached per asset), used only when the contract's crop is "vehicle",
        as in the pipeline. `progress(done, total)` is called after each batch.
        """
        if boxes is not None and len(boxes) != len(images):
            raise ValueError(f"{len(boxes)} boxes given for {len(images)} images")
        total = len(images)
        parts = []
        for start in range(0, total, BATCH):
            tensors = []
            for index in range(start, min(start + BATCH, total)):
                item = images[index]
                picture = item.image if isinstance(item, Decoded) else item
                pixels = np.asarray(picture if picture.mode == "RGB" else flatten_to_rgb(picture))
                box = boxes[index] if boxes is not None and contract.crop == "vehicle" else None
                crop = (box[0], box[1], box[2], box[3]) if box is not None else None  # JSON caches give lists
                tensors.append(to_tensor(pixels, contract.input, box=crop))
            parts.append(self.features(batch(tensors)))
            if progress is not None:
                progress(start + len(tensors), total)
        if not parts:
            return np.zeros((0, self.head.n_features), dtype=np.float32)
        return np.concatenate(parts, axis=0)


def _sample_weights(
    labels: np.ndarray, n_classes: int, class_weight: ClassWeight, sample_weight: np.ndarray | None
) -> np.ndarray:
    weights = np.ones(len(labels)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    if weights.shape != labels.shape or not (weights >= 0).all() or weights.sum() <= 0:
        raise ValueError(f"sample_weight must be {len(labels)} non-negative weights, not all zero")
    if class_weight == "balanced":
        # Each class present gets the same total weight (sklearn's n / (k * count_c) when all weights are 1).
        # Weighted counts, so down-weighted pseudo-labels count for what they weigh.
        totals = np.bincount(labels, weights=weights, minlength=n_classes)
        present = totals > 0
        per_class = np.zeros(n_classes)
        per_class[present] = weights.sum() / (present.sum() * totals[present])
        weights = weights * per_class[labels]
    elif class_weight is not None:
        raise ValueError(f"class_weight must be 'balanced' or None, got {class_weight!r}")
    return weights


def fit_head(
    features: np.ndarray,
    labels: np.ndarray,
    n_classes: int,
    *,
    init_weight: np.ndarray | None = None,
    init_bias: np.ndarray | None = None,
    anchor: float = 0.0,
    l2: float = 1e-3,
    class_weight: ClassWeight = None,
    sample_weight: np.ndarray | None = None,
    max_iter: int = 200,
) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression by L-BFGS from (init_weight, init_bias), returning (W [K, D], b [K]).

    Minimises the weighted mean cross-entropy + anchor * (||W - W0||^2 + ||c - c0||^2) + l2 * ||W||^2, where c
    is the logits at the weighted mean feature (b + W mu; c0 the parent's). The loss is a weighted *mean*, so a
    penalty strength means the same whatever the number of rows. The anchor (L2-SP) keeps the candidate near
    the parent head, so classes the fixes barely mention keep their old behaviour; the bias is anchored but
    not shrunk by l2 (it carries the class priors).
    Deterministic: no random start, no shuffling.
    """
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    if x.ndim != 2 or len(x) != len(y) or len(y) == 0:
        raise ValueError(f"need features [N, D] and N labels, got {x.shape} and {y.shape}")
    if y.min() < 0 or y.max() >= n_classes:
        raise ValueError(f"labels must be in [0, {n_classes}), got {y.min()}..{y.max()}")
    n_features = x.shape[1]
    w0 = np.zeros((n_classes, n_features)) if init_weight is None else np.asarray(init_weight, dtype=np.float64)
    b0 = np.zeros(n_classes) if init_bias is None else np.asarray(init_bias, dtype=np.float64).reshape(-1)
    if w0.shape != (n_classes, n_features) or b0.shape != (n_classes,):
        raise ValueError(f"initial head is {w0.shape} + {b0.shape}, features need ({n_classes}, {n_features})")
    weights = _sample_weights(y, n_classes, class_weight, sample_weight)
    weights = weights / weights.sum()
    onehot = np.zeros((len(y), n_classes))
    onehot[np.arange(len(y)), y] = 1.0
    # Solve on centred features, logits = (x - mu) W^T + c with c = b + W mu: embeddings (non-negative after
    # HardSwish/ReLU) share a large mean direction that makes the uncentred problem ill-conditioned; centred,
    # L-BFGS needed several times fewer iterations on 3000 x 512. The bias anchor therefore pulls c, the
    # logits at the mean embedding, toward the parent's: the parent's average behaviour on these images.
    mean = weights @ x
    x = x - mean
    c0 = b0 + w0 @ mean
    split = n_classes * n_features

    def objective(params: np.ndarray) -> tuple[float, np.ndarray]:
        w = params[:split].reshape(n_classes, n_features)
        c = params[split:]
        logits = x @ w.T + c
        logits -= logits.max(axis=1, keepdims=True)
        log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        residual = (np.exp(log_p) - onehot) * weights[:, None]
        loss = -float((weights * (onehot * log_p).sum(axis=1)).sum())
        loss += anchor * (float(((w - w0) ** 2).sum()) + float(((c - c0) ** 2).sum())) + l2 * float((w**2).sum())
        grad_w = residual.T @ x + 2 * anchor * (w - w0) + 2 * l2 * w
        grad_c = residual.sum(axis=0) + 2 * anchor * (c - c0)
        return loss, np.concatenate([grad_w.ravel(), grad_c])

    start = np.concatenate([w0.ravel(), c0])
    # scipy is imported here, by the training worker that fits: every other process (a tagging worker, its fetch
    # processes, the web server) is ~50 MB lighter without it (issue 21's memory bound).
    from scipy.optimize import minimize

    result = minimize(objective, start, jac=True, method="L-BFGS-B", options={"maxiter": max_iter})
    weight = result.x[:split].reshape(n_classes, n_features)
    bias = result.x[split:] - weight @ mean
    return weight.astype(np.float32), bias.astype(np.float32)


def predict(features: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Softmax probabilities [N, K] of a head (W [K, D], b [K]) on features [N, D], as the ONNX head would give."""
    logits = np.asarray(features, dtype=np.float64) @ np.asarray(weight, dtype=np.float64).T + bias
    return activate(logits, "softmax")


def write_refit_model(source: ModelSource, output: str, weight: np.ndarray, bias: np.ndarray) -> bytes:
    """The source model's bytes with only head `output`'s weight and bias replaced (W [K, D], b [K]).

    Shapes, dtype (float32), the stored layout (Gemm transB) and every input and output stay as they were,
    so the source's contract still describes the result. Checked with onnx.checker.
    """
    model = _load(source)
    head = find_head(model, output)
    weight = np.asarray(weight, dtype=np.float32)
    bias = np.asarray(bias, dtype=np.float32).reshape(-1)
    if weight.shape != head.weight.shape or bias.shape != head.bias.shape:
        raise RefitError(
            f"head {output!r} needs weight {head.weight.shape} and bias {head.bias.shape}, "
            f"got {weight.shape} and {bias.shape}"
        )
    if not (np.isfinite(weight).all() and np.isfinite(bias).all()):
        raise RefitError(f"head {output!r}: refitted weights hold non-finite values")
    stored_weight = weight.T if head.stored_transposed else weight
    replacements = {
        head.weight_name: numpy_helper.from_array(np.ascontiguousarray(stored_weight), head.weight_name),
        head.bias_name: numpy_helper.from_array(bias.reshape(head.bias_shape), head.bias_name),
    }
    outputs_before = [value.SerializeToString() for value in model.graph.output]
    for index, tensor in enumerate(model.graph.initializer):
        if tensor.name in replacements:
            model.graph.initializer[index].CopyFrom(replacements[tensor.name])
    if [value.SerializeToString() for value in model.graph.output] != outputs_before:
        raise RefitError("refitting changed the graph outputs")  # cannot happen: only initializers are touched
    onnx.checker.check_model(model)
    return model.SerializeToString()


def evaluate(y_true: Sequence[Any], y_pred: Sequence[Any], labels: Sequence[str]) -> dict[str, Any]:
    """Accuracy, macro F1, per-class precision/recall/F1/support and the confusion (rows true, columns predicted).

    `y_true` and `y_pred` hold label strings or class indices into `labels`.
    """

    def names(values: Sequence[Any]) -> list[str]:
        return [labels[int(value)] if isinstance(value, int | np.integer) else str(value) for value in values]

    report = classification_report(names(y_true), names(y_pred), labels)
    return {
        "accuracy": report["accuracy"],
        "macro_f1": report["macro_f1"],
        "labels": report["labels"],
        "per_class": report["per_class"],
        "confusion": report["confusion_matrix"],
        "n": report["n"],
    }


@dataclass(frozen=True)
class CandidateSettings:
    """How one candidate head is fitted; stored with the candidate ModelVersion (dataclasses.asdict)."""

    anchor: float  # L2-SP strength toward the parent head
    l2: float  # plain L2 on W
    class_weight: ClassWeight
    pseudo_label_weight: float  # sample weight of "retained knowledge" rows; human labels weigh 1.0


# Why these (measured on the vehicle starter model): its features are HardSwish activations with a norm of
# ~11 per image while the parent head has ||W0|| ~0.9, and the loss is a mean, so the anchor's scale is set by
# W0. Fitting 200 images whose Stock label was turned into Dealer, anchor 1.0 let the head move by
# ||W - W0|| ~0.4 and learnt the new labelling only partly (0.86 held-out accuracy against 0.99); 0.1 and
# 0.01 learnt it fully (moves of ~0.8 and ~1.6); 0.001 moved ~3, close to an unanchored fit (~8). So the first
# four span "nearly the parent" to "nearly free" a decade apart, and the held-out evaluation picks. They are
# class-balanced because fixes pile up on the model's common mistakes. Pseudo-labels weigh more where the
# anchor is weak: they are then the only thing keeping classes that the fixes never mention. Beyond four, the
# grid adds unbalanced twins of the middle strengths and the half-decades between them.
_GRID = (
    CandidateSettings(anchor=0.01, l2=1e-4, class_weight="balanced", pseudo_label_weight=0.5),
    CandidateSettings(anchor=0.1, l2=1e-4, class_weight="balanced", pseudo_label_weight=0.5),
    CandidateSettings(anchor=0.001, l2=1e-4, class_weight="balanced", pseudo_label_weight=1.0),
    CandidateSettings(anchor=1.0, l2=1e-4, class_weight="balanced", pseudo_label_weight=0.25),
    CandidateSettings(anchor=0.01, l2=1e-4, class_weight=None, pseudo_label_weight=0.5),
    CandidateSettings(anchor=0.1, l2=1e-4, class_weight=None, pseudo_label_weight=0.5),
    CandidateSettings(anchor=0.003, l2=1e-4, class_weight="balanced", pseudo_label_weight=0.75),
    CandidateSettings(anchor=0.03, l2=1e-4, class_weight="balanced", pseudo_label_weight=0.5),
)


def default_grid(n: int = 4) -> list[CandidateSettings]:
    """N distinct settings (1 to 8; by default anchors 0.001, 0.01, 0.1 and 1.0), weakest anchor first.

    A smaller n keeps the middle strengths: 1 gives anchor 0.01, 2 adds 0.1, 3 adds 0.001.
    """
    if not 1 <= n <= len(_GRID):
        raise ValueError(f"default_grid offers 1 to {len(_GRID)} settings, asked for {n}")
    return sorted(_GRID[:n], key=lambda settings: settings.anchor)


def kind_weights(kinds: Sequence[str]) -> np.ndarray:
    """Row weights that give each vehicle kind present the same total weight (rows without a kind keep 1, and the
    kinds' rows keep their total): a kind that few labels show is not outweighed by the cars, retrain after
    retrain."""
    weights = np.ones(len(kinds))
    known = [kind for kind in kinds if kind]
    if not known:
        return weights
    counts = {kind: known.count(kind) for kind in set(known)}
    for i, kind in enumerate(kinds):
        if kind:
            weights[i] = len(known) / (len(counts) * counts[kind])
    return weights


def fit_with_settings(
    features: np.ndarray,
    labels: np.ndarray,
    head: HeadLayer,
    settings: CandidateSettings,
    *,
    pseudo: np.ndarray | None = None,
    row_weight: np.ndarray | None = None,
    max_iter: int = 200,
) -> tuple[np.ndarray, np.ndarray]:
    """`fit_head` from the parent `head` with one candidate's settings; `pseudo` marks retained-knowledge rows, and
    `row_weight` (if given) multiplies each row's weight (the vehicle kinds' rebalancing: kind_weights)."""
    sample_weight = None
    if pseudo is not None:
        sample_weight = np.where(np.asarray(pseudo, dtype=bool), settings.pseudo_label_weight, 1.0)
    if row_weight is not None:
        base = np.ones(len(labels)) if sample_weight is None else sample_weight
        sample_weight = base * np.asarray(row_weight, dtype=np.float64)
    return fit_head(
        features,
        labels,
        head.n_classes,
        init_weight=head.weight,
        init_bias=head.bias,
        anchor=settings.anchor,
        l2=settings.l2,
        class_weight=settings.class_weight,
        sample_weight=sample_weight,
        max_iter=max_iter,
    )
