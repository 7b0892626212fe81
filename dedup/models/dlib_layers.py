"""The layers of dlib's face-recognition ResNet as typed values, and the shapes they produce.

``dedup.models.dlib_format`` reads them from dlib's file; ``dedup.models.dlib_onnx`` rebuilds
them as an ONNX graph. Shapes are those of one sample, (k, nr, nc) in dlib's names.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from dedup.errors import ModelError

F32 = NDArray[np.float32]
Shape = tuple[int, int, int]  # channels, rows, columns of one sample (dlib's k, nr, nc)


class DlibFormatError(ModelError, ValueError):
    """The weight file is not a well-formed dlib face-recognition network.

    A ``ModelError`` for operators, and a ``ValueError`` for callers that only know the
    standard library's way of saying "malformed input".
    """


@dataclass(frozen=True)
class LossMetricLayer:
    margin: float
    distance_threshold: float  # dlib's same-person threshold on the raw descriptor distance


@dataclass(frozen=True)
class InputLayer:
    means: tuple[float, float, float]  # R, G, B values subtracted before dividing by 256
    rows: int
    cols: int


@dataclass(frozen=True)
class ConvLayer:
    weights: F32  # (num_filters, k, nr, nc): ONNX's OIHW
    bias: F32  # (num_filters,)
    stride: tuple[int, int]
    padding: tuple[int, int]


@dataclass(frozen=True)
class AffineLayer:
    """Batch norm frozen for inference: ``gamma * x + beta`` per channel."""

    gamma: F32
    beta: F32


@dataclass(frozen=True)
class ReluLayer:
    pass


@dataclass(frozen=True)
class PoolLayer:
    """``max_pool_`` or ``avg_pool_``; a (0, 0) window pools each whole channel."""

    kind: str  # "max" or "avg"
    size: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]

    @property
    def is_global(self) -> bool:
        return self.size == (0, 0)


@dataclass(frozen=True)
class TagLayer:
    tag: int


@dataclass(frozen=True)
class SkipLayer:
    """Replaces the running output with the output of the nearest ``tag`` below."""

    tag: int


@dataclass(frozen=True)
class AddPrevLayer:
    """Adds the nearest ``tag`` below; shapes may differ (dlib zero-pads the smaller)."""

    tag: int


@dataclass(frozen=True)
class FcLayer:
    weights: F32  # (num_inputs, num_outputs): output = input @ weights (+ bias)
    bias: F32 | None


Layer = (
    ConvLayer | AffineLayer | ReluLayer | PoolLayer | TagLayer | SkipLayer | AddPrevLayer | FcLayer
)


@dataclass(frozen=True)
class DlibNetwork:
    loss: LossMetricLayer
    input: InputLayer
    layers: tuple[Layer, ...]  # from the input upwards


def trace_shapes(network: DlibNetwork) -> list[tuple[Layer, Shape]]:
    """Each layer with the (k, nr, nc) of its output for one sample, as dlib computes them."""
    shape: Shape = (3, network.input.rows, network.input.cols)
    tagged: dict[int, Shape] = {}
    traced: list[tuple[Layer, Shape]] = []
    for layer in network.layers:
        if isinstance(layer, ConvLayer):
            shape = (layer.weights.shape[0], *_window(shape, layer.weights.shape[2:], layer))
        elif isinstance(layer, PoolLayer):
            shape = (
                (shape[0], 1, 1)
                if layer.is_global
                else (shape[0], *_window(shape, layer.size, layer))
            )
        elif isinstance(layer, TagLayer):
            tagged[layer.tag] = shape
        elif isinstance(layer, SkipLayer):
            shape = tagged[layer.tag]
        elif isinstance(layer, AddPrevLayer):
            other = tagged[layer.tag]
            shape = (max(shape[0], other[0]), max(shape[1], other[1]), max(shape[2], other[2]))
        elif isinstance(layer, FcLayer):
            shape = (layer.weights.shape[1], 1, 1)
        traced.append((layer, shape))
    return traced


def _window(shape: Shape, size: tuple[int, ...], layer: ConvLayer | PoolLayer) -> tuple[int, int]:
    rows, cols = (
        1 + (shape[1 + axis] + 2 * layer.padding[axis] - size[axis]) // layer.stride[axis]
        for axis in range(2)
    )
    if rows < 1 or cols < 1:
        raise DlibFormatError(f"a {size} window does not fit a {shape} input")
    return rows, cols


def describe(layer: Layer) -> str:
    """One short line per layer, for logs and the exporter's layer table."""
    if isinstance(layer, ConvLayer):
        o, i, kh, kw = layer.weights.shape
        return f"con {i}->{o} {kh}x{kw} stride {layer.stride[0]} pad {layer.padding[0]}"
    if isinstance(layer, PoolLayer):
        if layer.is_global:
            return f"{layer.kind}_pool everything"
        return f"{layer.kind}_pool {layer.size[0]}x{layer.size[1]} stride {layer.stride[0]}"
    if isinstance(layer, AffineLayer):
        return f"affine {layer.gamma.size}"
    if isinstance(layer, FcLayer):
        return f"fc {layer.weights.shape[0]}->{layer.weights.shape[1]}"
    if isinstance(layer, TagLayer | SkipLayer | AddPrevLayer):
        return f"{type(layer).__name__.removesuffix('Layer').lower()}{layer.tag}"
    return "relu"
