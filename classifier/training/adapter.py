"""An input adapter for a head: the head reads, beside the embedding, the mean of each input channel over a coarse
grid of the picture it is given (the vehicle crop, as the model sees it).

Why: a head refitted on a frozen embedding can only learn what the embedding kept. For a photo style the model never
saw, the vehicle model's embedding keeps too little of the body color (a linear probe on it reached 0.82 color on the
drifted style, with 280 labels, and no regularisation did better), while the colors are plainly in the pixels. The
adapter hands the head those pixels, coarsely: 3 channels x GRID x GRID cell means (48 numbers at GRID 4), computed
in the graph from the model's own input, so the file keeps its contract (same input, same outputs) and any ONNX
runtime runs it.

`with_input_adapter` returns the model with the head rewired onto [embedding, cell means] and the new weights zero:
it answers exactly as before until a refit moves them (the L2-SP anchor then pulls toward zero, the parent's
behaviour). Refitting (classifier.training.refit) sees the adapted model like any other: its head's features are the
concatenated tensor.
"""

from __future__ import annotations

import copy

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .refit import ModelSource, RefitError, _load, find_head

GRID = 4
SUFFIX = ".adapter"


def adapter_features_name(output: str) -> str:
    """The tensor an adapted head reads: the embedding and the cell means, concatenated."""
    return f"{output}{SUFFIX}.features"


def is_adapted(model: onnx.ModelProto, output: str) -> bool:
    return find_head(model, output).features == adapter_features_name(output)


def with_input_adapter(
    source: ModelSource | onnx.ModelProto, output: str, *, layout: str, size: tuple[int, int], grid: int = GRID
) -> onnx.ModelProto:
    """The model with head `output` reading [its embedding, the input's channel means over a grid x grid tiling],
    the added weights zero (it answers as the source does). `layout` (NCHW/NHWC) and `size` (height, width) are the
    contract's input. Already adapted: returned as it is (a copy)."""
    model = copy.deepcopy(_load(source))
    head = find_head(model, output)
    if head.features == adapter_features_name(output):
        return model
    height, width = size
    if height % grid or width % grid:
        raise RefitError(f"an input of {height}x{width} does not tile into {grid}x{grid} cells")
    graph = model.graph
    initializers = {tensor.name for tensor in graph.initializer}
    inputs = [value.name for value in graph.input if value.name not in initializers]
    if len(inputs) != 1:
        raise RefitError(f"the model has {len(inputs)} inputs: the adapter needs exactly one")
    name = f"{output}{SUFFIX}"
    nodes = [helper.make_node("Cast", [inputs[0]], [f"{name}.pixels"], to=onnx.TensorProto.FLOAT)]  # uint8 inputs too
    pixels = f"{name}.pixels"
    if layout == "NHWC":
        nodes.append(helper.make_node("Transpose", [pixels], [f"{name}.nchw"], perm=[0, 3, 1, 2]))
        pixels = f"{name}.nchw"
    kernel = [height // grid, width // grid]
    nodes += [
        helper.make_node("AveragePool", [pixels], [f"{name}.cells"], kernel_shape=kernel, strides=kernel),
        helper.make_node("Flatten", [f"{name}.cells"], [f"{name}.means"], axis=1),
        helper.make_node("Flatten", [head.features], [f"{name}.embedding"], axis=1),
        helper.make_node("Concat", [f"{name}.embedding", f"{name}.means"], [adapter_features_name(output)], axis=1),
    ]
    # Rewire the head's linear layer (Gemm, or the MatMul of MatMul + Add) onto the concatenated tensor.
    readers = [node for node in graph.node if head.weight_name in node.input and head.features in node.input]
    if len(readers) != 1:
        raise RefitError(f"head {output!r}: cannot find the one node of its linear layer")
    layer = readers[0]
    layer.input[list(layer.input).index(head.features)] = adapter_features_name(output)
    # The cell means' weights start at zero: stored [K, D] or, transposed, [D, K].
    added = 3 * grid * grid
    stored = numpy_helper.to_array(next(t for t in graph.initializer if t.name == head.weight_name))
    if head.stored_transposed:
        grown = np.concatenate([stored, np.zeros((added, stored.shape[1]), dtype=stored.dtype)], axis=0)
    else:
        grown = np.concatenate([stored, np.zeros((stored.shape[0], added), dtype=stored.dtype)], axis=1)
    for index, tensor in enumerate(graph.initializer):
        if tensor.name == head.weight_name:
            graph.initializer[index].CopyFrom(numpy_helper.from_array(np.ascontiguousarray(grown), head.weight_name))
    # Insert the new nodes just before the layer that reads them (the graph stays topologically sorted).
    position = list(graph.node).index(layer)
    kept = list(graph.node)
    del graph.node[:]
    graph.node.extend(kept[:position] + nodes + kept[position:])
    onnx.checker.check_model(model)
    return model
