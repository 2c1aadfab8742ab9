"""The tflite backend with the real litert-torch converter and LiteRT interpreter (skipped if absent)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("litert_torch", reason='litert-torch not installed (pip install -e ".[tflite]")')
pytest.importorskip("ai_edge_litert.interpreter", reason='ai-edge-litert not installed (pip install -e ".[tflite]")')

from latency.backends import Protocol, get_backend  # noqa: E402
from latency.backends.tflite_backend import TFLiteBackend, from_model_layout, to_model_layout  # noqa: E402
from search_spaces.builder import build_op  # noqa: E402
from search_spaces.opkey import OpKey  # noqa: E402

# A V3-Small block at resolution 14 (expand, 5x5 depthwise, SE with hard-sigmoid gate, h-swish,
# residual) and a stride-2 3x3 conv (PyTorch's symmetric padding becomes an explicit PAD op).
BNECK = OpKey.from_str("bneck_r14_i40_e240_o40_k5_s1_se64-hsigmoid_hswish_res")
CONV = OpKey.from_str("conv_r28_i24_e0_o48_k3_s2_se0_hswish")
LINEAR = OpKey.from_str("linear_r1_i576_e0_o1024_k1_s1_se0_hswish")

# Measured (litert-torch 0.10.0, ai-edge-litert 2.3.0, XNNPACK, float32): over all 30 distinct ops of
# V3-Large and V3-Small at 224 and both whole networks, with random BN statistics, the largest
# |tflite - torch| was 1.8e-6 of max|torch output|. The tolerance leaves a margin of ~5x.
REL_TOL = 1e-5


def randomized(module: nn.Module, seed: int = 0) -> nn.Module:
    """``module`` in eval mode with non-trivial BN statistics, so BN folding is exercised."""
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=g) * 0.4 - 0.2)
    return module.eval()


def torch_output(module: nn.Module, compiled) -> np.ndarray:
    """``module`` on the compiled model's own (channels-last) input, in torch's layout."""
    with torch.no_grad():
        return module(torch.from_numpy(from_model_layout(compiled.feed))).numpy()


def max_rel_err(got: np.ndarray, expected: np.ndarray) -> float:
    return float(np.abs(got - expected).max() / max(1.0, float(np.abs(expected).max())))


@pytest.fixture(scope="module")
def backend() -> TFLiteBackend:
    return get_backend("tflite", threads=1)


@pytest.fixture(scope="module")
def bneck(backend):
    module = randomized(build_op(BNECK), seed=1)
    compiled = backend.compile(module, BNECK.input_shape)
    yield module, compiled
    compiled.close()


def test_registry_and_versions(backend):
    assert isinstance(backend, TFLiteBackend)
    assert backend.runtime_version().startswith("LiteRT 2.")
    prov = backend.provenance()
    assert prov["backend"] == "tflite" and prov["threads"] == 1
    assert prov["converter"].startswith("litert-torch ")
    assert prov["io_layout"] == "NHWC"


def test_convert_writes_a_flatbuffer(backend, tmp_path):
    path = backend.convert(build_op(CONV), CONV.input_shape, tmp_path / "sub" / "conv.tflite")
    assert path == tmp_path / "sub" / "conv.tflite"
    data = path.read_bytes()
    assert data[4:8] == b"TFL3"  # the TFLite flatbuffer file identifier
    interpreter = backend.interpreter(data)
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    assert tuple(inp["shape"]) == (1, 28, 28, 24)  # NHWC, as a TensorFlow-built model
    assert tuple(out["shape"]) == (1, 14, 14, 48)
    assert inp["dtype"] == np.float32


def test_bneck_matches_torch(bneck):
    module, compiled = bneck
    assert compiled.feed.shape == (1, 14, 14, 40)
    compiled.run()
    assert compiled.output().shape == (1, 14, 14, 40)
    assert max_rel_err(from_model_layout(compiled.output()), torch_output(module, compiled)) < REL_TOL


def test_bneck_is_fully_delegated_without_layout_transposes(bneck):
    names = bneck[1].op_names()
    assert "DELEGATE" in names  # XNNPACK took the graph
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "HARD_SWISH", "MEAN", "ADD"} <= set(names)
    assert "TRANSPOSE" not in names  # channels-last I/O: no NCHW<->NHWC ops at the boundaries


def test_conv_matches_torch(backend):
    module = randomized(build_op(CONV), seed=2)
    compiled = backend.compile(module, CONV.input_shape)
    compiled.run()
    assert "PAD" in compiled.op_names()  # torch pads stride-2 convs symmetrically, unlike TF's SAME
    assert max_rel_err(from_model_layout(compiled.output()), torch_output(module, compiled)) < REL_TOL


def test_linear_op_keeps_2d_layout(backend):
    module = build_op(LINEAR).eval()
    compiled = backend.compile(module, LINEAR.input_shape)
    assert compiled.feed.shape == (1, 576)
    compiled.run()
    assert compiled.output().shape == (1, 1024)
    assert max_rel_err(compiled.output(), torch_output(module, compiled)) < REL_TOL


def test_channels_first_io_is_also_exact_but_adds_transposes():
    backend = TFLiteBackend(threads=1, channels_last_io=False)
    module = randomized(build_op(BNECK), seed=3)
    compiled = backend.compile(module, BNECK.input_shape)
    assert compiled.feed.shape == BNECK.input_shape
    compiled.run()
    with torch.no_grad():
        expected = module(torch.from_numpy(compiled.feed)).numpy()
    assert max_rel_err(compiled.output(), expected) < REL_TOL
    assert compiled.op_names().count("TRANSPOSE") == 2  # litert-torch's default keeps NCHW I/O this way


def test_identity_compiles(backend):
    """The profiler times an empty graph (Identity) of each input shape as the per-call overhead."""
    compiled = backend.compile(nn.Identity(), BNECK.input_shape)
    compiled.run()
    np.testing.assert_array_equal(compiled.output(), compiled.feed)


def test_measure_returns_positive_finite_times(backend):
    protocol = Protocol(warmup=2, repeats=5, rounds=2)
    times = backend.measure(build_op(BNECK), BNECK.input_shape, protocol)
    assert times.shape == (10,)
    assert np.all(np.isfinite(times)) and np.all(times > 0)
    assert np.median(times) < 1000.0  # ms; a 14x14 block is far below a second


def test_layout_helpers_round_trip():
    x = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    assert to_model_layout(x).shape == (2, 4, 5, 3)
    np.testing.assert_array_equal(from_model_layout(to_model_layout(x)), x)
    v = np.ones((1, 7))
    assert to_model_layout(v) is v and from_model_layout(v) is v


def test_rejects_bad_threads():
    with pytest.raises(ValueError, match="threads"):
        TFLiteBackend(threads=0)
