"""The ONNX Runtime embedder on small graphs built here, whose answers numpy can compute."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import onnx
import pytest
from numpy.typing import NDArray
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from dedup.errors import ModelError
from dedup.models.embedder import CPU, CUDA, TENSORRT, Embedder, choose_providers
from dedup.settings import EmbedSettings, ModelSpec

SIZE, DIM = 16, 8
RNG = np.random.default_rng(7)
WEIGHTS = RNG.normal(size=(3, DIM)).astype(np.float32)


def mean_pool_graph(path: Path, layout: str = "NCHW", dim: int = DIM) -> Path:
    """input -> per-channel spatial mean -> MatMul(WEIGHTS): a template numpy can recompute."""
    axes = [2, 3] if layout == "NCHW" else [1, 2]
    shape: list[str | int] = (
        ["batch", 3, SIZE, SIZE] if layout == "NCHW" else ["batch", SIZE, SIZE, 3]
    )
    weights = RNG.normal(size=(3, dim)).astype(np.float32) if dim != DIM else WEIGHTS
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["input", "axes"], ["pooled"], keepdims=0),
            helper.make_node("MatMul", ["pooled", "w"], ["embedding"]),
        ],
        "mean-pool",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", dim])],
        initializer=[
            numpy_helper.from_array(np.array(axes, dtype=np.int64), "axes"),
            numpy_helper.from_array(weights, "w"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def spec(**changes: object) -> ModelSpec:
    values: dict[str, object] = {
        "alignment": "dlib-150",
        "dimension": DIM,
        "input_size": SIZE,
        "mean": (100.0, 110.0, 120.0),
        "scale": (0.01, 0.02, 0.03),
    }
    values.update(changes)
    return ModelSpec.model_validate(values)


def expected(chips: NDArray[np.uint8], model: ModelSpec) -> NDArray[np.float32]:
    pixels = chips.astype(np.float64)
    if model.colour_order == "BGR":
        pixels = pixels[..., ::-1]
    normalised = (pixels - np.array(model.mean)) * np.array(model.scale)
    raw = normalised.mean(axis=(1, 2)) @ WEIGHTS.astype(np.float64)
    unit: NDArray[np.float32] = (raw / np.linalg.norm(raw, axis=1, keepdims=True)).astype(
        np.float32
    )
    return unit


@pytest.fixture
def chips() -> NDArray[np.uint8]:
    return RNG.integers(0, 256, size=(10, SIZE, SIZE, 3), dtype=np.uint8)


def embedder(path: Path, model: ModelSpec, batch_size: int = 4) -> Embedder:
    settings = EmbedSettings(batch_size=batch_size, device="cpu", intra_op_threads=1)
    return Embedder("test-model", model, path, settings)


@pytest.mark.parametrize("colour_order", ["RGB", "BGR"])
def test_templates_apply_the_registry_normalisation(
    tmp_path: Path, chips: NDArray[np.uint8], colour_order: str
) -> None:
    model = spec(colour_order=colour_order)
    templates = embedder(mean_pool_graph(tmp_path / "m.onnx"), model).embed(chips)
    assert templates.dtype == np.float32 and templates.shape == (10, DIM)
    np.testing.assert_allclose(templates, expected(chips, model), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(templates, axis=1), 1.0, atol=1e-6)


def test_nhwc_layout(tmp_path: Path, chips: NDArray[np.uint8]) -> None:
    model = spec(layout="NHWC")
    templates = embedder(mean_pool_graph(tmp_path / "m.onnx", layout="NHWC"), model).embed(chips)
    np.testing.assert_allclose(templates, expected(chips, model), atol=1e-5)


def test_batch_size_does_not_change_templates(tmp_path: Path, chips: NDArray[np.uint8]) -> None:
    path = mean_pool_graph(tmp_path / "m.onnx")
    one = embedder(path, spec(), batch_size=1).embed(chips)
    many = embedder(path, spec(), batch_size=64).embed(chips)
    np.testing.assert_allclose(one, many, atol=1e-6)
    assert embedder(path, spec()).embed(chips[:0]).shape == (0, DIM)


def test_png_chips_as_stored_in_faces(tmp_path: Path, chips: NDArray[np.uint8]) -> None:
    pngs = []
    for chip in chips:
        buffer = io.BytesIO()
        Image.fromarray(chip).save(buffer, format="PNG")
        pngs.append(buffer.getvalue())
    e = embedder(mean_pool_graph(tmp_path / "m.onnx"), spec())
    np.testing.assert_array_equal(e.embed_png(pngs), e.embed(chips))


def test_wrong_chip_size_is_refused(tmp_path: Path) -> None:
    e = embedder(mean_pool_graph(tmp_path / "m.onnx"), spec())
    with pytest.raises(ModelError, match=r"\(N, 16, 16, 3\)"):
        e.embed(np.zeros((2, 15, 15, 3), dtype=np.uint8))


def test_registry_entry_must_match_the_graph(tmp_path: Path) -> None:
    path = mean_pool_graph(tmp_path / "m.onnx", dim=5)
    with pytest.raises(ModelError, match="not 8-d"):
        embedder(path, spec())
    with pytest.raises(ModelError, match="does not take 20x20"):
        embedder(mean_pool_graph(tmp_path / "n.onnx"), spec(input_size=20))


def test_missing_graph_says_how_to_make_it(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="export-dlib"):
        embedder(tmp_path / "absent.onnx", spec())


def test_a_zero_template_is_an_error_not_a_nan(tmp_path: Path) -> None:
    e = embedder(mean_pool_graph(tmp_path / "m.onnx"), spec(mean=(0.0, 0.0, 0.0)))
    with pytest.raises(ModelError, match="zero or non-finite"):
        e.embed(np.zeros((1, SIZE, SIZE, 3), dtype=np.uint8))


class TestProviders:
    def test_cpu_when_onnxruntime_has_no_gpu(self) -> None:
        choice = choose_providers([CPU], "auto", fp16=True)
        assert (choice.providers, choice.device) == ([CPU], "cpu")

    def test_cuda_requested_without_a_gpu_build_fails_clearly(self) -> None:
        with pytest.raises(ModelError, match="onnxruntime-gpu"):
            choose_providers([CPU], "cuda", fp16=True)

    def test_gpu_build_prefers_tensorrt_with_fp16_then_cuda(self) -> None:
        choice = choose_providers([TENSORRT, CUDA, CPU], "auto", fp16=True, gpu_id=3)
        assert choice.device == "cuda:3"
        assert choice.providers[0] == (TENSORRT, {"device_id": 3, "trt_fp16_enable": True})
        assert choice.providers[1] == (CUDA, {"device_id": 3})
        assert choice.providers[-1] == CPU

    def test_fp16_off_when_the_model_forbids_it(self) -> None:
        choice = choose_providers([TENSORRT, CUDA, CPU], "auto", fp16=False)
        assert choice.providers[0][1]["trt_fp16_enable"] is False

    def test_settings_can_force_the_cpu_on_a_gpu_machine(self) -> None:
        assert choose_providers([CUDA, CPU], "cpu", fp16=True).providers == [CPU]
