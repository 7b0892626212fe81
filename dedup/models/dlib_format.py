"""A reader for dlib's serialisation of its face-recognition ResNet, without dlib.

We convert dlib's weights to ONNX ourselves (``dedup.models.dlib_onnx``) so that inference
needs neither dlib nor a deep-learning framework. That means reading dlib's own format, which
is not documented outside its sources; what this module relies on was read off the bytes of
``dlib_face_recognition_resnet_model_v1.dat`` and confirmed by parity with dlib:

- integers: one control byte (low nibble: count of little-endian magnitude bytes; 0x80: the
  value is negative) then the bytes, so ``01 0d`` is 13;
- scalar floats: two such integers, mantissa and binary exponent (``m * 2**e``);
- strings: an integer length then the characters; booleans: the ASCII byte ``'0'`` or ``'1'``;
- tensors: version 2, then num_samples, k, nr, nc, then the values as raw little-endian float32
  (not as mantissa/exponent pairs, which is why parsing takes well under a second);
- the network: the loss layer's version and record, then one version integer per nested layer
  from the top down (2: an ``add_layer``, 1: a tag or skip layer, 3: the bottom ``add_layer``
  that owns the input layer), then the input layer and every ``add_layer``'s record from the
  bottom up, each followed by bookkeeping (three booleans and three empty gradient tensors;
  the bottom one also stores its sample expansion factor).

Tag and skip layers write nothing but their version, so their ids are not in the file: a lone
one in front of a block is ``tag1`` and a pair is ``tag2`` then ``skip1``, the only layouts of
dlib's ``dnn_face_recognition_ex.cpp`` network. Anything else is refused.

    >>> net = read_dlib_network(Path(face_recognition_model_location()))  # doctest: +SKIP
    >>> len(net.layers), net.loss.distance_threshold                      # doctest: +SKIP
    (130, 0.6000000238418579)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np

from dedup.errors import DependencyError
from dedup.models.dlib_layers import (
    F32,
    AddPrevLayer,
    AffineLayer,
    ConvLayer,
    DlibFormatError,
    DlibNetwork,
    FcLayer,
    InputLayer,
    Layer,
    LossMetricLayer,
    PoolLayer,
    ReluLayer,
    SkipLayer,
    TagLayer,
)

_MAX_LAYERS = 10_000  # far above any real network; stops a corrupt file from looping on


class DlibReader:
    """Reads dlib's primitive encodings from a byte buffer, failing loudly on truncation."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def _take(self, count: int, what: str) -> bytes:
        end = self.pos + count
        if count < 0 or end > len(self.data):
            raise DlibFormatError(f"truncated at byte {self.pos} while reading {what}")
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def read_int(self, what: str = "an integer") -> int:
        control = self._take(1, what)[0]
        size = control & 0x0F
        if size > 8 or control & 0x70:
            raise DlibFormatError(f"bad integer control byte {control:#04x} at byte {self.pos - 1}")
        value = int.from_bytes(self._take(size, what), "little")
        return -value if control & 0x80 else value

    def read_float(self, what: str = "a float") -> float:
        mantissa, exponent = self.read_int(what), self.read_int(what)
        try:
            return math.ldexp(float(mantissa), exponent)
        except OverflowError:
            raise DlibFormatError(f"{what} out of range: {mantissa} * 2**{exponent}") from None

    def read_string(self, what: str = "a string") -> str:
        raw = self._take(self.read_int(what), what)
        try:
            return raw.decode("ascii")
        except UnicodeDecodeError:
            raise DlibFormatError(f"non-text bytes in {what} at byte {self.pos}") from None

    def read_bool(self, what: str = "a flag") -> bool:
        byte = self._take(1, what)
        if byte not in (b"0", b"1"):
            raise DlibFormatError(f"bad flag byte {byte!r} at byte {self.pos - 1} in {what}")
        return byte == b"1"

    def read_tensor(self, what: str) -> F32:
        """A ``resizable_tensor``: its values as float32, shaped (num_samples, k, nr, nc)."""
        self.expect_version(2, what)
        shape = tuple(self.read_int(what) for _ in range(4))
        if any(dim < 0 for dim in shape):
            raise DlibFormatError(f"negative tensor dimension {shape} in {what}")
        count = math.prod(shape)
        raw = self._take(4 * count, what)
        return np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(shape)

    def read_alias(self, what: str) -> tuple[int, int, int, int]:
        """An ``alias_tensor``: only the shape of a view into a layer's parameter tensor."""
        self.expect_version(1, what)
        n, k, nr, nc = (self.read_int(what) for _ in range(4))
        return n, k, nr, nc

    def expect_version(self, expected: int, what: str) -> None:
        found = self.read_int(what)
        if found != expected:
            raise DlibFormatError(
                f"{what}: version {found} at byte {self.pos}, expected {expected}"
            )

    def expect_string(self, expected: str) -> None:
        found = self.read_string(f"the {expected!r} record")
        if found != expected:
            raise DlibFormatError(
                f"found record {found!r} at byte {self.pos}, expected {expected!r}"
            )


def read_dlib_network(path: Path) -> DlibNetwork:
    """Parse dlib's face-recognition ResNet weight file into typed layers, bottom up."""
    if not path.is_file():
        raise DependencyError(
            f"dlib weight file {path} is missing: install the face-recognition-models package"
        )
    try:
        return parse_dlib_network(path.read_bytes())
    except DlibFormatError as error:
        raise DlibFormatError(
            f"{path.name} is not a usable dlib face recogniser: {error}"
        ) from None


def parse_dlib_network(data: bytes) -> DlibNetwork:
    """Parse the bytes of a weight file; ``read_dlib_network`` adds the file name to errors."""
    reader = DlibReader(data)
    reader.expect_version(1, "the loss layer")
    reader.expect_string("loss_metric_2")
    loss = LossMetricLayer(
        reader.read_float("the margin"), reader.read_float("the distance threshold")
    )
    versions = _read_versions(reader)
    input_layer = _read_input(reader)
    records: list[Layer] = []
    for index in range(versions.count(2) + 1):
        records.append(_read_record(reader))
        _skip_bookkeeping(reader, bottom=index == 0)
    if reader.pos != len(data):
        raise DlibFormatError(f"{len(data) - reader.pos} unexpected bytes after the last layer")
    layers = _place_tags(versions, records)
    return DlibNetwork(loss, input_layer, layers)


def _read_versions(reader: DlibReader) -> list[int]:
    """The version of every nested layer, top down, ending with the bottom layer's 3."""
    versions: list[int] = []
    while len(versions) < _MAX_LAYERS:
        version = reader.read_int("a layer version")
        if version not in (1, 2, 3):
            raise DlibFormatError(f"unknown layer version {version} at byte {reader.pos}")
        versions.append(version)
        if version == 3:
            return versions
    raise DlibFormatError(f"more than {_MAX_LAYERS} nested layers")


def _read_input(reader: DlibReader) -> InputLayer:
    reader.expect_string("input_rgb_image_sized")
    r, g, b = (reader.read_float("the input means") for _ in range(3))
    return InputLayer(
        (r, g, b), reader.read_int("the input rows"), reader.read_int("the input columns")
    )


def _read_conv(reader: DlibReader) -> ConvLayer:
    params = reader.read_tensor("convolution parameters").ravel()
    filters, rows, cols, stride_y, stride_x, pad_y, pad_x = (
        reader.read_int("convolution geometry") for _ in range(7)
    )
    shape = reader.read_alias("convolution filters")
    bias_shape = reader.read_alias("convolution biases")
    for _ in range(4):  # learning-rate and weight-decay multipliers: training only
        reader.read_float("a convolution multiplier")
    if shape[0] != filters or shape[2:] != (rows, cols):
        raise DlibFormatError(f"convolution filters {shape} disagree with {filters}x{rows}x{cols}")
    size = math.prod(shape)
    has_bias = math.prod(bias_shape) > 0
    if params.size != size + (filters if has_bias else 0):
        raise DlibFormatError(f"convolution holds {params.size} values, filters {shape} need more")
    bias = params[size:] if has_bias else np.zeros(filters, np.float32)
    return ConvLayer(params[:size].reshape(shape), bias, (stride_y, stride_x), (pad_y, pad_x))


def _read_affine(reader: DlibReader) -> AffineLayer:
    params = reader.read_tensor("affine parameters").ravel()
    gamma, beta = reader.read_alias("affine gamma"), reader.read_alias("affine beta")
    mode = reader.read_int("the affine mode")
    channels = gamma[1]
    if mode != 0 or gamma != beta or gamma != (1, channels, 1, 1) or params.size != 2 * channels:
        raise DlibFormatError(f"affine layer is not per-channel: mode {mode}, gamma {gamma}")
    return AffineLayer(params[:channels].copy(), params[channels:].copy())


def _read_pool(kind: str) -> Callable[[DlibReader], PoolLayer]:
    def read(reader: DlibReader) -> PoolLayer:
        rows, cols, stride_y, stride_x, pad_y, pad_x = (
            reader.read_int(f"{kind} pool geometry") for _ in range(6)
        )
        return PoolLayer(kind, (rows, cols), (stride_y, stride_x), (pad_y, pad_x))

    return read


def _read_fc(reader: DlibReader) -> FcLayer:
    outputs, inputs = reader.read_int("fc outputs"), reader.read_int("fc inputs")
    params = reader.read_tensor("fc parameters").ravel()
    weights, biases = reader.read_alias("fc weights"), reader.read_alias("fc biases")
    bias_mode = reader.read_int("the fc bias mode")  # 0: with bias, 1: fc_no_bias
    for _ in range(4):
        reader.read_float("an fc multiplier")
    has_bias = bias_mode == 0
    expected = inputs * outputs + (outputs if has_bias else 0)
    if weights != (inputs, outputs, 1, 1) or params.size != expected or bias_mode not in (0, 1):
        raise DlibFormatError(f"fc layer {inputs}->{outputs} has weights {weights}, bias {biases}")
    matrix = params[: inputs * outputs].reshape(inputs, outputs)
    return FcLayer(matrix, params[inputs * outputs :].copy() if has_bias else None)


_READERS: dict[str, Callable[[DlibReader], Layer]] = {
    "con_4": _read_conv,
    "affine_": _read_affine,
    "relu_": lambda reader: ReluLayer(),
    "max_pool_2": _read_pool("max"),
    "avg_pool_2": _read_pool("avg"),
    "add_prev_": lambda reader: AddPrevLayer(tag=0),  # the tag id is set by _place_tags
    "fc_2": _read_fc,
}


def _read_record(reader: DlibReader) -> Layer:
    start = reader.pos
    name = reader.read_string("a layer name")
    read = _READERS.get(name)
    if read is None:
        raise DlibFormatError(f"unsupported layer {name!r} at byte {start}")
    return read(reader)


def _skip_bookkeeping(reader: DlibReader, *, bottom: bool) -> None:
    """add_layer's training state after each record: three flags, three gradient tensors."""
    for _ in range(3):
        reader.read_bool("layer flags")
    for _ in range(3):
        reader.read_tensor("a gradient buffer")
    if bottom:
        reader.read_int("the sample expansion factor")


def _place_tags(versions: list[int], records: list[Layer]) -> tuple[Layer, ...]:
    """Interleave the tag and skip layers (version 1, no record) with the records, bottom up."""
    layers: list[Layer] = []
    pending = 0
    queue = iter(records)
    last_group = 0
    for version in reversed(versions):  # bottom up: the first is the input's add_layer (3)
        if version == 1:
            pending += 1
            continue
        if pending == 1:
            layers.append(TagLayer(1))
        elif pending == 2:
            layers.extend((TagLayer(2), SkipLayer(1)))
        elif pending:
            raise DlibFormatError(f"{pending} tag/skip layers in a row: an unknown layout")
        last_group, pending = pending or last_group, 0
        record = next(queue)
        if isinstance(record, AddPrevLayer):
            record = AddPrevLayer(tag=last_group)
        layers.append(record)
    if pending:
        raise DlibFormatError("tag or skip layers above the last layer")
    _check_tags(layers)
    return tuple(layers)


def _check_tags(layers: list[Layer]) -> None:
    seen: set[int] = set()
    for layer in layers:
        if isinstance(layer, TagLayer):
            seen.add(layer.tag)
        elif isinstance(layer, AddPrevLayer | SkipLayer) and layer.tag not in seen:
            raise DlibFormatError(f"{type(layer).__name__} refers to tag{layer.tag} below no tag")
