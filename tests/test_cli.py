"""The search_spaces command lines, run as a user runs them."""

import json
import subprocess
import sys
from pathlib import Path

import onnx

ROOT = Path(__file__).resolve().parents[1]


def run(*args, check=True):
    result = subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, cwd=ROOT)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def test_describe_json():
    out = json.loads(run("search_spaces.describe", "mobilenet_v3_large", "--width", "0.75", "--json").stdout)
    assert {"name", "params", "madds", "resolution", "blocks"} <= set(out)
    assert out["params"] == 3_993_528 and out["resolution"] == 224
    assert isinstance(out["madds"], int) and abs(out["madds"] / 155e6 - 1) < 0.02
    assert len(out["blocks"]) == 15


def test_describe_yaml_file_and_resolution():
    result = run("search_spaces.describe", "experiments/specs/mobilenet_v3_small.yaml", "--resolution", "160")
    assert "160x160" in result.stdout and "total: 2,542,856 params" in result.stdout


def test_describe_bad_input_is_one_line():
    result = run("search_spaces.describe", "no_such_net", check=False)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "cannot read spec 'no_such_net'" in result.stderr


def test_export_onnx_and_timm(tmp_path):
    out = tmp_path / "small.onnx"
    result = run("search_spaces.export", "mobilenet_v3_small", "--onnx", str(out), "--timm")
    onnx.checker.check_model(onnx.load(str(out)))
    lines = result.stdout.splitlines()
    assert lines[0].startswith("mobilenet_v3_small:stem_k3_s2_c16_nhs|ds_r1_k3_s2_e1_c16_se0.25_nre|")
    # The printed string reads back as the same spec.
    described = json.loads(run("search_spaces.describe", lines[0], "--json").stdout)
    assert described["params"] == 2_542_856
