"""The command lines, run as a user runs them: the search_spaces CLIs as subprocesses, and every
CLI's argument checks in-process through ``main(argv)`` (bad input is one line, exit status 2,
before any work starts)."""

import json
import subprocess
import sys
from pathlib import Path

import onnx
import pytest
import torch
import yaml

from search_spaces import build, reference
from search_spaces.describe import main as describe_main
from search_spaces.export import main as export_main

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


# --------------------------------------------------------------------------- hostile input (issue #14)


def call(main, argv, capsys):
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(main, argv, capsys, *needles):
    code, out, err = call(main, argv, capsys)
    assert code == 2, (code, out[-500:], err[-500:])
    assert err.count("\n") == 1 and err.startswith("error: ") and len(err) < 600, err
    for needle in needles:
        assert needle in err, err
    return err


def _spec_file(tmp_path, name, **changes):
    data = reference("mobilenet_v3_small").to_dict()
    for path, value in changes.items():
        target = data
        *parents, key = path.split("__")
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]
        target[key] = value
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_describe_json_huge_stem_is_one_line(tmp_path, capsys):
    # An uncaught SpecError (a traceback) before.
    path = _spec_file(tmp_path, "huge.yaml", stem__out_channels=1_000_000_000)
    one_line_error(describe_main, [path, "--json"], capsys, "stem.out_channels: 1000000000 is above the maximum 8192")


def test_describe_refuses_huge_resolution(capsys):
    # 168 GB of activations reported without complaint before.
    one_line_error(describe_main, ["mobilenet_v3_small", "--resolution", "100000"], capsys, "above the maximum 4096")


def test_export_onnx_refuses_a_float_kernel(tmp_path, capsys):
    # kernel: 3.0 passed describe and crashed export --onnx.
    path = _spec_file(tmp_path, "float.yaml", blocks__0__kernel=3.0)
    one_line_error(export_main, [path, "--onnx", tmp_path / "m.onnx"], capsys, "blocks[0].kernel: 3.0 is not one of")
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.parametrize("flag", ["--yaml", "--onnx"])
@pytest.mark.parametrize("where,needle", [
    ("folder", "is a folder"), ("under_file", "which is a file, not a folder"), ("unwritable", "cannot write in"),
])
def test_export_checks_output_paths_first(tmp_path, capsys, flag, where, needle):
    (tmp_path / "file.txt").write_text("x")
    path = {"folder": tmp_path, "under_file": tmp_path / "file.txt" / "out.x",
            "unwritable": "/proc/no_dir/out.x"}[where]
    one_line_error(export_main, ["mobilenet_v3_small", "--timm", flag, path], capsys, f"argument {flag}:", needle)


def test_export_weights_missing_garbage_or_mismatched(tmp_path, capsys):
    out = tmp_path / "m.onnx"
    (tmp_path / "garbage.pt").write_bytes(b"\x00not a torch file" * 20)
    torch.save(build(reference("mobilenet_v3_large")).state_dict(), tmp_path / "large.pt")
    for weights, needle in [(tmp_path / "missing.pt", "does not exist"),
                            (tmp_path / "garbage.pt", "is not a torch.save(state_dict) file readable"),
                            (tmp_path / "large.pt", "does not fit mobilenet_v3_small"), (tmp_path, "is a folder")]:
        one_line_error(export_main, ["mobilenet_v3_small", "--onnx", out, "--weights", weights], capsys,
                       "argument --weights:", needle)
    assert not out.exists()


def test_export_writes_yaml_under_new_folders(tmp_path, capsys):
    code, out, _ = call(export_main, ["mobilenet_v3_small", "--yaml", tmp_path / "a" / "b" / "s.yaml"], capsys)
    assert code == 0 and (tmp_path / "a" / "b" / "s.yaml").exists()


SEARCH_BAD = [
    # (argv, needles): accepted before, most of them after a child had trained or Ray had started
    (["--target-ms", "-5"], ["--target-ms", "out of range"]), (["--target-ms", "0"], ["--target-ms"]),
    (["--target-ms", "nan"], ["--target-ms"]), (["--epochs", "inf"], ["--epochs"]),
    (["--data", "bogus"], ["--data", "'bogus' is not a known source"]),
    (["--proxy-resolution", "-5"], ["--proxy-resolution"]),
    (["--rl-batch-size", "0"], ["--rl-batch-size"]), (["--cpus-per-trial", "-1"], ["--cpus-per-trial"]),
    (["--gpus-per-trial", "-1"], ["--gpus-per-trial"]), (["--retries", "-1"], ["--retries"]),
    (["--concurrency", "0"], ["--concurrency"]), (["--proxy", "lr=[1"], ["--proxy", "not a YAML value"]),
    (["--proxy", "colour=red"], ["--proxy", "'colour': unknown setting"]), (["--proxy", "lr=-1"], ["--proxy", "lr"]),
    (["--proxy", "epochs=.inf"], ["--proxy", "epochs: inf is not a finite number"]),
    (["--proxy", "seed=3"], ["--proxy", "seed is set by --seed"]), (["--children", "0"], ["--children"]),
    (["--w", "0.5"], ["--w"]), (["--hard", "--alpha", "-1"], ["--hard"]), (["--target", "nope"], ["--target"]),
    (["--space", "nope"], ["--space"]), (["--gpus-per-trial", "1.5"], ["--gpus-per-trial", "whole number"]),
]


@pytest.mark.parametrize("argv,needles", SEARCH_BAD, ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_search_refuses_bad_arguments_before_any_work(tmp_path, capsys, argv, needles):
    from nas.search import main

    err = one_line_error(main, argv + ["--out", tmp_path / "run", "--dry-run"], capsys, *needles)
    assert "unrecognized" not in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("out", ["file", "under_file", "unwritable"])
def test_search_and_netadapt_check_out_first(tmp_path, capsys, out):
    from nas.search import main as search_main
    from netadapt.run import main as netadapt_main

    (tmp_path / "file.txt").write_text("x")
    path = {"file": tmp_path / "file.txt", "under_file": tmp_path / "file.txt" / "run",
            "unwritable": "/proc/no_dir"}[out]
    one_line_error(search_main, ["--out", path, "--dry-run"], capsys, "argument --out:")
    one_line_error(netadapt_main, ["mobilenet_v3_small", "--budget-ratio", "0.9", "--out", path, "--dry-run"], capsys,
                   "argument --out:")


def test_search_dry_run_prints_the_checked_settings(tmp_path, capsys):
    from nas.search import main

    argv = ["--dry-run", "--json", "--out", tmp_path / "run", "--proxy", "lr=0.05", "--epochs", "0.5"]
    code, out, err = call(main, argv, capsys)
    assert code == 0, err
    plan = json.loads(out)
    settings = plan["config"]
    assert settings["proxy_overrides"] == {"lr": 0.05} and settings["epochs"] == 0.5
    assert not (tmp_path / "run").exists()
    # what will run, resolved: the target latency and the signal are never null
    assert plan["target_ms"] > 0 and "mobilenet_v3_large" in plan["target_ms_source"]
    assert plan["signal"]["profile"] == "cpu" and plan["signal"]["proxy"]["device"] == "cpu"
    assert plan["signal"]["proxy"]["epochs"] == 0.5 and plan["signal"]["proxy"]["lr"] == 0.05


def _words(main, argv, capsys) -> str:
    code, out, err = call(main, argv, capsys)
    assert code == 0, err
    with pytest.raises(json.JSONDecodeError):
        json.loads(out)  # words for a person; JSON only with --json
    return out


def test_dry_runs_say_in_words_what_will_run(tmp_path, capsys):
    import re

    from nas.search import main as search_main
    from netadapt.run import main as netadapt_main

    out = _words(search_main, ["--dry-run", "--out", tmp_path / "run", "--epochs", "0.5"], capsys)
    assert re.search(r"target latency: \d+\.\d+ ms on pixel1, from mobilenet_v3_large", out), out
    assert "profile cpu" in out and "device cpu" in out and "64 px" in out and "0.5 epochs" in out
    assert "data default" in out and "children scored by: training each from scratch" in out
    supernet = _words(search_main, ["--dry-run", "--out", tmp_path / "run", "--signal", "supernet"], capsys)
    assert "children scored by: a weight-sharing supernet" in supernet and "1.5 epochs)" in supernet
    gpu = _words(search_main, ["--dry-run", "--out", tmp_path / "run", "--gpus-per-trial", "1"], capsys)
    assert "profile gpu" in gpu and "device cuda" in gpu and "96 px" in gpu and "3 epochs" in gpu
    out = _words(netadapt_main, ["mobilenet_v3_small", "--budget-ratio", "0.9", "--out", tmp_path / "n",
                                 "--dry-run"], capsys)
    assert re.search(r"latency budget: \d+\.\d+ ms on pixel1, 0\.9 x mobilenet_v3_small's \d+\.\d+ ms", out), out
    assert "profile cpu" in out and "device cpu" in out and "data default" in out
    code, out, err = call(netadapt_main, ["mobilenet_v3_small", "--budget-ms", "10", "--out", tmp_path / "n",
                                          "--dry-run", "--json"], capsys)
    plan = json.loads(out)
    assert plan["budget_ms"] == 10 and plan["budget_ms_source"] == "given (--budget-ms)"
    assert plan["signal"]["profile"] == "cpu" and not (tmp_path / "n").exists()


NETADAPT_BAD = [
    (["--budget-ratio", "0.9", "--pretrain-epochs", "inf"], ["--pretrain-epochs"]),  # OverflowError before
    (["--budget-ratio", "nan"], ["--budget-ratio"]), (["--budget-ms", "-1"], ["--budget-ms"]),
    (["--budget-ratio", "0.9", "--step-ratio", "inf"], ["--step-ratio"]),
    (["--budget-ratio", "0.9", "--step-decay", "0"], ["--step-decay"]),
    (["--budget-ratio", "0.9", "--finetune-lr", "nan"], ["--finetune-lr"]),
    (["--budget-ratio", "0.9", "--finetune-steps", "-1"], ["--finetune-steps"]),
    (["--budget-ratio", "0.9", "--noise-seeds", "17"], ["--noise-seeds"]),
    (["--budget-ratio", "0.9", "--chosen-finetune-steps", "-3"], ["--chosen-finetune-steps"]),
    (["--budget-ratio", "0.9", "--val-size", "-1"], ["--val-size"]),
    (["--budget-ratio", "0.9", "--proxy-resolution", "-5"], ["--proxy-resolution"]),
    (["--budget-ratio", "0.9", "--cpus-per-proposal", "0"], ["--cpus-per-proposal"]),
    (["--budget-ratio", "0.9", "--gpus-per-proposal", "-1"], ["--gpus-per-proposal"]),
    (["--budget-ratio", "0.9", "--max-iterations", "0"], ["--max-iterations"]),
    (["--budget-ratio", "0.9", "--proposals", "foo"], ["--proposals"]),
    (["--budget-ratio", "0.9", "--data", "cifar10:/nonexistent"], ["--data", "is not a folder"]),
    (["--budget-ratio", "0.9", "--proxy", "batch_size=0"], ["--proxy", "batch_size"]),
    (["--budget-ratio", "0.9", "--pretrain-epochs", "2", "--proxy", "epochs=3"],
     ["--proxy", "set by --pretrain-epochs"]),
    (["--budget-ratio", "0.9", "--weights", "/nonexistent.pt"], ["--weights", "does not exist"]),
]


@pytest.mark.parametrize("argv,needles", NETADAPT_BAD, ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_netadapt_refuses_bad_arguments_before_any_work(tmp_path, capsys, argv, needles):
    from netadapt.run import main

    argv = ["mobilenet_v3_small"] + argv + ["--out", tmp_path / "run", "--dry-run"]
    err = one_line_error(main, argv, capsys, *needles)
    assert "unrecognized" not in err
    assert not (tmp_path / "run").exists()


def test_netadapt_refuses_a_bad_spec_before_any_work(tmp_path, capsys):
    from netadapt.run import main

    path = _spec_file(tmp_path, "float.yaml", blocks__0__kernel=3.0)
    one_line_error(main, [path, "--budget-ratio", "0.9", "--out", tmp_path / "run", "--dry-run"], capsys,
                   "argument SPEC:", "blocks[0].kernel: 3.0")
