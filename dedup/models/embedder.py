"""Face templates from aligned chips with ONNX Runtime: batched, L2-normalised float32.

One ``Embedder`` holds one ONNX Runtime session. On a machine with ``onnxruntime-gpu`` and a
GPU it runs on TensorRT or CUDA (half precision where the model allows it); otherwise on the
CPU with the thread counts the settings give, so that several embedders (Ray actors) can
share a node without oversubscribing its cores.

    >>> embedder = Embedder.from_settings(load_settings())        # doctest: +SKIP
    >>> embedder.embed(chips).shape                               # doctest: +SKIP
    (64, 128)
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from dedup.errors import ModelError
from dedup.settings import EmbedSettings, ModelSpec, Settings

Templates = NDArray[np.float32]

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
TENSORRT = "TensorrtExecutionProvider"


@dataclass(frozen=True)
class ProviderChoice:
    """Which execution providers a session uses, and why: reported with every job."""

    providers: list[Any]
    device: str
    reason: str


def choose_providers(
    available: Sequence[str], device: str, fp16: bool, gpu_id: int = 0
) -> ProviderChoice:
    """TensorRT, then CUDA, when a GPU build of ONNX Runtime is present; the CPU otherwise.

    ``device="cuda"`` insists on a GPU and fails clearly without one; ``"auto"`` falls back.
    """
    gpu_ready = CUDA in available
    if device == "cpu" or (device == "auto" and not gpu_ready):
        why = "settings ask for the CPU" if device == "cpu" else "no CUDA execution provider"
        return ProviderChoice([CPU], "cpu", why)
    if not gpu_ready:
        raise ModelError(
            "embed.device is 'cuda' but ONNX Runtime has no CUDA execution provider: install "
            "dedup[gpu] (onnxruntime-gpu) on a machine with an NVIDIA GPU, or set device: auto"
        )
    providers: list[Any] = []
    if TENSORRT in available:
        providers.append((TENSORRT, {"device_id": gpu_id, "trt_fp16_enable": fp16}))
    providers.append((CUDA, {"device_id": gpu_id}))
    providers.append(CPU)
    names = " then ".join(p[0] if isinstance(p, tuple) else p for p in providers)
    return ProviderChoice(providers, f"cuda:{gpu_id}", f"GPU build found: {names}")


class Embedder:
    """Chips in, unit-length templates out, for one registered model."""

    def __init__(
        self,
        model_id: str,
        spec: ModelSpec,
        onnx_path: Path,
        embed: EmbedSettings,
        gpu_id: int = 0,
    ) -> None:
        import onnxruntime as ort

        if not onnx_path.is_file():
            raise ModelError(
                f"ONNX graph of model {model_id!r} not found at {onnx_path}"
                + (": run `dedup model export-dlib`" if spec.onnx is None else "")
            )
        options = ort.SessionOptions()
        options.intra_op_num_threads = embed.intra_op_threads or 0
        options.inter_op_num_threads = embed.inter_op_threads
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.choice = choose_providers(
            ort.get_available_providers(), embed.device, spec.fp16_allowed, gpu_id
        )
        try:
            self._session = ort.InferenceSession(
                str(onnx_path), sess_options=options, providers=self.choice.providers
            )
        except Exception as exc:  # ONNX Runtime raises its own untyped errors
            raise ModelError(f"ONNX Runtime cannot load {onnx_path}: {exc}") from exc
        self.model_id = model_id
        self.spec = spec
        self.batch_size = embed.batch_size
        (graph_input,) = self._session.get_inputs()
        self._input_name = graph_input.name
        self._check_graph(graph_input.shape, self._session.get_outputs()[0].shape)
        channels = [2, 1, 0] if spec.colour_order == "BGR" else [0, 1, 2]
        self._channels = np.array(channels)
        self._mean = np.array(spec.mean, dtype=np.float32)
        self._scale = np.array(spec.scale, dtype=np.float32)

    @classmethod
    def from_settings(cls, settings: Settings, gpu_id: int = 0) -> Embedder:
        return cls(
            settings.model,
            settings.model_spec,
            settings.model_path(),
            settings.embed,
            gpu_id=gpu_id,
        )

    def _check_graph(self, input_shape: list[Any], output_shape: list[Any]) -> None:
        size, dim = self.spec.input_size, self.spec.dimension
        spatial = input_shape[2:] if self.spec.layout == "NCHW" else input_shape[1:3]
        if [s for s in spatial if isinstance(s, int)] not in ([], [size, size]):
            raise ModelError(
                f"model {self.model_id!r}: graph input {input_shape} does not take "
                f"{size}x{size} chips as its registry entry says"
            )
        if isinstance(output_shape[-1], int) and output_shape[-1] != dim:
            raise ModelError(
                f"model {self.model_id!r}: graph output {output_shape} is not {dim}-d "
                "as its registry entry says"
            )

    def preprocess(self, chips: NDArray[np.uint8]) -> NDArray[np.float32]:
        """(N, H, W, 3) RGB uint8 chips to the graph's input tensor."""
        size = self.spec.input_size
        if chips.ndim != 4 or chips.shape[1:] != (size, size, 3):
            raise ModelError(
                f"model {self.model_id!r} takes (N, {size}, {size}, 3) RGB chips, got {chips.shape}"
            )
        pixels = (chips[..., self._channels].astype(np.float32) - self._mean) * self._scale
        if self.spec.layout == "NCHW":
            pixels = pixels.transpose(0, 3, 1, 2)
        return np.ascontiguousarray(pixels)

    def embed(self, chips: NDArray[np.uint8]) -> Templates:
        """Unit-length float32 templates, one row per chip, computed in batches."""
        if len(chips) == 0:
            return np.zeros((0, self.spec.dimension), dtype=np.float32)
        rows = []
        for start in range(0, len(chips), self.batch_size):
            tensor = self.preprocess(chips[start : start + self.batch_size])
            (raw,) = self._session.run(None, {self._input_name: tensor})
            rows.append(np.asarray(raw, dtype=np.float32).reshape(len(tensor), -1))
        return l2_normalise(np.concatenate(rows))

    def embed_png(self, chips: Sequence[bytes]) -> Templates:
        return self.embed(decode_chips(chips))


def l2_normalise(vectors: NDArray[np.float32]) -> Templates:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    if not np.all(np.isfinite(vectors)) or np.any(norms == 0):
        raise ModelError("the model produced a zero or non-finite template")
    unit: Templates = (vectors / norms).astype(np.float32)
    return unit


def decode_chips(chips: Sequence[bytes]) -> NDArray[np.uint8]:
    """PNG chips (as the faces table stores them) to one (N, H, W, 3) uint8 array."""
    return np.stack([np.asarray(Image.open(io.BytesIO(c)).convert("RGB")) for c in chips])
