"""Convert dlib's face-recognition ResNet to an ONNX graph and write its model card.

Inference in the pipeline runs on ONNX Runtime only, so the default model (dlib's 128-d
descriptor, public domain, shipped in ``face-recognition-models``) is converted here from the
weight file itself (``dedup.models.dlib_format``), with no dlib and no deep-learning framework.
The graph reproduces dlib's arithmetic: each ``affine_`` (frozen batch norm) is folded into the
convolution below it, and ``add_prev`` of tensors of different shapes zero-pads the smaller one
at the end of the channel and spatial axes, as dlib's ``tt::add`` does.

The graph takes pixels already normalised: the caller applies the card's
``(pixel - mean) * scale`` to RGB chips, as it does for any ArcFace-style model registered by
config, so every model is fed the same way. Its output is dlib's raw descriptor, not unit
length; dlib's same-person rule is a Euclidean distance below 0.6 on that raw descriptor.

    >>> weights = Path(face_recognition_model_location())        # doctest: +SKIP
    >>> card = export_dlib(weights, Path("dlib-resnet-v1.onnx"))  # doctest: +SKIP
    >>> card.embedding_dimension, card.input_size                 # doctest: +SKIP
    (128, 150)
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from dedup.atomic_files import sha256_file, write_bytes_atomically
from dedup.models.dlib_format import read_dlib_network
from dedup.models.dlib_layers import (
    AddPrevLayer,
    AffineLayer,
    ConvLayer,
    DlibNetwork,
    FcLayer,
    PoolLayer,
    ReluLayer,
    Shape,
    SkipLayer,
    TagLayer,
    trace_shapes,
)

MODEL_ID = "dlib-resnet-v1"
OPSET = 17
INPUT_NAME = "input"
OUTPUT_NAME = "embedding"
SOURCE_PACKAGE = "face-recognition-models"
SOURCE_VERSION = "0.3.0"


@dataclass(frozen=True)
class Normalisation:
    """What the caller does to 0..255 pixels first: ``(pixel - mean[c]) * scale[c]``.

    Per-channel like ``dedup.settings.ModelSpec``, so a card's values can be copied into a
    registry entry as they are.
    """

    mean: tuple[float, float, float]  # in the card's colour order
    scale: tuple[float, float, float]


@dataclass(frozen=True)
class ModelCard:
    """Everything an embedder needs to feed the graph and read its output, next to the .onnx."""

    id: str
    source: dict[str, str]
    licence: str
    weights_sha256: str
    onnx_sha256: str
    opset: int
    input_name: str
    output_name: str
    input_size: int
    layout: str
    colour_order: str
    normalisation: Normalisation
    normalisation_in_graph: bool
    embedding_dimension: int
    embedding_normalised: bool
    alignment: str
    distance_threshold: float
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> ModelCard:
        values: dict[str, Any] = json.loads(text)
        norm = values.pop("normalisation")
        mean, scale = (tuple(float(v) for v in norm[key]) for key in ("mean", "scale"))
        return cls(normalisation=Normalisation(mean, scale), **values)  # type: ignore[arg-type]


def export_dlib(weights: Path, out: Path) -> ModelCard:
    """Write ``out`` (the ONNX graph) and ``out.with_suffix(".json")`` (its card), atomically.

    Raises ``DependencyError`` when the weight file is missing and ``DlibFormatError`` (a
    ``ValueError``) when it is not a well-formed dlib face recogniser.
    """
    if out.suffix != ".onnx":
        raise ValueError(f"{out}: the exported graph must end in .onnx (its card gets .json)")
    network = read_dlib_network(weights)
    model = build_onnx_model(network)
    onnx.checker.check_model(model)
    graph_bytes = model.SerializeToString()
    card = ModelCard(
        id=MODEL_ID,
        source={"package": SOURCE_PACKAGE, "version": SOURCE_VERSION, "file": weights.name},
        licence="CC0-1.0 / public domain",
        weights_sha256=sha256_file(weights),
        onnx_sha256=hashlib.sha256(graph_bytes).hexdigest(),
        opset=OPSET,
        input_name=INPUT_NAME,
        output_name=OUTPUT_NAME,
        input_size=network.input.rows,
        layout="NCHW",
        colour_order="RGB",
        normalisation=Normalisation(_means(network), (1 / 256, 1 / 256, 1 / 256)),
        normalisation_in_graph=False,
        embedding_dimension=int(model.graph.output[0].type.tensor_type.shape.dim[1].dim_value),
        embedding_normalised=False,
        alignment="dlib-150",
        distance_threshold=round(network.loss.distance_threshold, 6),
        notes=[
            "Input: float32 [batch, 3, 150, 150], RGB chips cut by dlib.get_face_chip(size=150,"
            " padding=0.25), normalised by the caller as (pixel - mean) * scale.",
            "Output: dlib's raw descriptor, not unit length (norms near 1.4 are usual);"
            " dlib calls two faces the same person when the Euclidean distance between raw"
            " descriptors is below distance_threshold. L2-normalise before cosine search.",
        ],
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomically(out, graph_bytes)
    write_bytes_atomically(out.with_suffix(".json"), card.to_json().encode())
    return card


def build_onnx_model(network: DlibNetwork) -> onnx.ModelProto:
    """The ONNX graph computing dlib's descriptor from a normalised NCHW batch."""
    graph = _GraphBuilder()
    traced = trace_shapes(network)
    current = INPUT_NAME
    shape: Shape = (3, network.input.rows, network.input.cols)
    tagged: dict[int, tuple[str, Shape]] = {}
    index = 0
    while index < len(traced):
        layer, out_shape = traced[index]
        if isinstance(layer, ConvLayer):
            following = traced[index + 1][0] if index + 1 < len(traced) else None
            affine = following if isinstance(following, AffineLayer) else None
            current = graph.conv(current, layer, affine)
            index += 1 if affine else 0
        elif isinstance(layer, AffineLayer):
            current = graph.affine(current, layer)
        elif isinstance(layer, ReluLayer):
            current = graph.node("Relu", [current])
        elif isinstance(layer, PoolLayer):
            current = graph.pool(current, layer)
        elif isinstance(layer, TagLayer):
            tagged[layer.tag] = (current, shape)
        elif isinstance(layer, SkipLayer):
            current = tagged[layer.tag][0]
        elif isinstance(layer, AddPrevLayer):
            other, other_shape = tagged[layer.tag]
            left = graph.pad_to(current, shape, out_shape)
            right = graph.pad_to(other, other_shape, out_shape)
            current = graph.node("Add", [left, right])
        elif isinstance(layer, FcLayer):
            flat = graph.node("Flatten", [current], axis=1)
            current = graph.node("MatMul", [flat, graph.constant("fc_w", layer.weights)])
            if layer.bias is not None:
                current = graph.node("Add", [current, graph.constant("fc_b", layer.bias)])
        shape = out_shape
        index += 1
    graph.node("Identity", [current], output=OUTPUT_NAME)
    return graph.model(network, embedding_dim=shape[0])


class _GraphBuilder:
    """Accumulates nodes and initialisers with unique, readable names."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.count = 0

    def _name(self, stem: str) -> str:
        self.count += 1
        return f"{stem}_{self.count}"

    def constant(self, stem: str, value: np.ndarray[Any, Any]) -> str:
        name = self._name(stem)
        self.initializers.append(numpy_helper.from_array(value, name))
        return name

    def node(self, op: str, inputs: list[str], output: str | None = None, **attrs: Any) -> str:
        name = output or self._name(op.lower())
        self.nodes.append(helper.make_node(op, inputs, [name], name=f"{name}_op", **attrs))
        return name

    def conv(self, x: str, conv: ConvLayer, affine: AffineLayer | None) -> str:
        weights = conv.weights.astype(np.float64)
        bias = conv.bias.astype(np.float64)
        if affine is not None:  # gamma * (w * x + b) + beta, per output channel
            gamma = affine.gamma.astype(np.float64)
            weights = weights * gamma[:, None, None, None]
            bias = gamma * bias + affine.beta
        w = self.constant("conv_w", weights.astype(np.float32))
        b = self.constant("conv_b", bias.astype(np.float32))
        (kh, kw), (py, px) = conv.weights.shape[2:], conv.padding
        return self.node(
            "Conv",
            [x, w, b],
            kernel_shape=[kh, kw],
            strides=list(conv.stride),
            pads=[py, px, py, px],
        )

    def affine(self, x: str, affine: AffineLayer) -> str:
        gamma = self.constant("gamma", affine.gamma.reshape(-1, 1, 1))
        beta = self.constant("beta", affine.beta.reshape(-1, 1, 1))
        return self.node("Add", [self.node("Mul", [x, gamma]), beta])

    def pool(self, x: str, pool: PoolLayer) -> str:
        if pool.is_global:
            op = "GlobalMaxPool" if pool.kind == "max" else "GlobalAveragePool"
            return self.node(op, [x])
        (py, px), op = pool.padding, "MaxPool" if pool.kind == "max" else "AveragePool"
        attrs: dict[str, Any] = {"kernel_shape": list(pool.size), "strides": list(pool.stride)}
        attrs["pads"] = [py, px, py, px]
        return self.node(op, [x], **attrs)

    def pad_to(self, x: str, shape: Shape, target: Shape) -> str:
        """Zero-pad at the end of each axis, as dlib's add of unequal tensors does."""
        extra = [t - s for s, t in zip(shape, target, strict=True)]
        if not any(extra):
            return x
        pads = self.constant("pads", np.array([0, 0, 0, 0, 0, *extra], dtype=np.int64))
        return self.node("Pad", [x, pads], mode="constant")

    def model(self, network: DlibNetwork, embedding_dim: int) -> onnx.ModelProto:
        rows, cols = network.input.rows, network.input.cols
        graph = helper.make_graph(
            self.nodes,
            "dlib_face_recognition_resnet_model_v1",
            [
                helper.make_tensor_value_info(
                    INPUT_NAME, TensorProto.FLOAT, ["batch", 3, rows, cols]
                )
            ],
            [
                helper.make_tensor_value_info(
                    OUTPUT_NAME, TensorProto.FLOAT, ["batch", embedding_dim]
                )
            ],
            self.initializers,
        )
        model = helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid("", OPSET)],
            producer_name="dedup.models.dlib_onnx",
            doc_string="dlib face recognition ResNet v1 (raw 128-d descriptor), converted by dedup",
        )
        model.ir_version = 8  # the IR of opset 17: loadable by ONNX Runtime releases since 1.13
        helper.set_model_props(model, {"model_id": MODEL_ID})
        return model


def _means(network: DlibNetwork) -> tuple[float, float, float]:
    """The file's float32 means as their shortest decimals (122.782, ...): the same float32."""
    r, g, b = (float(str(np.float32(mean))) for mean in network.input.means)
    return r, g, b


def default_weights() -> Path:
    """dlib's weights as shipped in the PyPI package face-recognition-models."""
    import face_recognition_models

    return Path(face_recognition_models.face_recognition_model_location())


def ensure_dlib_export(out: Path, weights: Path | None = None, force: bool = False) -> ModelCard:
    """The exported graph at ``out``, exporting only if it is absent, stale or damaged.

    The card's sha256s tie the graph to the weights it came from: a graph whose bytes or
    source weights no longer match is exported again.
    """
    weights = weights or default_weights()
    card_path = out.with_suffix(".json")
    if not force and out.is_file() and card_path.is_file():
        card = ModelCard.from_json(card_path.read_text(encoding="utf-8"))
        current = card.weights_sha256 == sha256_file(weights)
        if current and card.onnx_sha256 == sha256_file(out):
            return card
    return export_dlib(weights, out)
