"""Hostile argument lists for the six command lines, each with its expected outcome.

:func:`argv_case` builds one argument list for a CLI from a table of its flags: every value is
drawn from a pool that mixes in-range values with hostile ones (NaN, infinities, out of range,
not a number, unwritable paths, broken files), and whether the list is valid is decided here,
from the flag's documented range, not by the code under test. ``nas.search`` and
``netadapt.run`` get ``--dry-run`` (validate, print the settings, exit), so a valid list costs
nothing; ``latency.profile`` has no dry run, so its lists always hold a hostile value.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass
from pathlib import Path

from .cases import (MAX_CLASSES, MAX_RES, MIN_RES, REFERENCES, Case, arch_case,
                            hostile_yaml, random_arch_string, spec_case)

_INT = re.compile(r"[+-]?[0-9]{1,30}")
_FLOAT = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]{1,4})?")


@dataclass(frozen=True)
class Number:
    """A numeric flag: ``int`` or ``float`` in [lo, hi] (lo excluded when ``open_lo``)."""

    kind: str
    lo: float | None = None
    hi: float | None = None
    open_lo: bool = False

    def ok(self, text: str) -> bool:
        if self.kind == "int":
            if not _INT.fullmatch(text):
                return False
            value = int(text)
        else:
            if not _FLOAT.fullmatch(text):
                return False
            value = float(text)
            if not math.isfinite(value):
                return False
        if self.lo is not None and (value < self.lo or (self.open_lo and value == self.lo)):
            return False
        return self.hi is None or value <= self.hi

    def draw(self, rnd: random.Random) -> str:
        if rnd.random() < 0.5:  # in range
            lo = self.lo if self.lo is not None else -1000
            hi = self.hi if self.hi is not None else max(lo + 10, 1000)
            if self.kind == "int":
                low = int(lo) + (1 if self.open_lo else 0)
                return str(rnd.choice([low, int(hi), rnd.randint(int(lo) + 1, int(hi))]))
            value = rnd.uniform(lo, hi) if rnd.random() < 0.8 else hi
            if self.open_lo and value <= lo:
                value = hi
            return f"{value:.4f}" if value < 0 else f"{value:.6g}"
        hostile = ["nan", "inf", "1e400", "abc", "", "0x10", "9" * 50, "1,5", "--", "١"]
        if self.lo is not None:
            hostile += [str(int(self.lo) - 1) if self.kind == "int" else f"{self.lo - 0.5:.4f}"]
            if self.open_lo or self.kind == "float":
                hostile.append(str(int(self.lo)) if self.open_lo else f"{self.lo - 1e-3:.4f}")
        if self.hi is not None:
            hostile += [str(int(self.hi) + 1), f"{self.hi * 10 + 1:g}"]
        if self.kind == "int":
            hostile += ["1.5", "1e3"]
        return rnd.choice(hostile)


class Workdir:
    """Files the hostile lists point at, made once: folders, a file, garbage weights, specs."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.counter = 0
        self.folder = self.root / "a_folder"
        self.folder.mkdir(exist_ok=True)
        self.file = self.root / "a_file.txt"
        self.file.write_text("not a folder\n")
        self.overwritable = self.root / "overwritable.txt"  # outputs may overwrite this one, never self.file
        self.overwritable.write_text("old\n")
        self.bad_target = self.root / "bad_target.yaml"
        self.bad_target.write_text("kind: [1\n")
        self.garbage = self.root / "garbage.pt"
        self.garbage.write_bytes(b"\x00\x01 not a torch file" * 10)
        self.empty = self.root / "empty.pt"
        self.empty.write_bytes(b"")
        self.big_yaml = self.root / "big.yaml"
        self.big_yaml.write_bytes(b"# padding\n" * 120_000)  # 1.2 MB > the 1 MiB cap
        import torch

        self.not_a_dict = self.root / "list.pt"
        torch.save([torch.zeros(2)], self.not_a_dict)
        self.tensors = self.root / "tensors.pt"
        torch.save({"w": torch.zeros(2)}, self.tensors)

    def fresh(self, suffix: str = "") -> Path:
        self.counter += 1
        return self.root / f"out{self.counter}{suffix}"

    def write(self, data: bytes, suffix: str = ".yaml") -> Path:
        path = self.fresh(suffix)
        path.write_bytes(data)
        return path


def output_path(rnd: random.Random, work: Workdir, folder: bool, suffix: str) -> tuple[str, bool, str]:
    """An output path: (text, usable, why)."""
    choice = rnd.choice(["fresh", "fresh", "nested", "existing_folder", "existing_file", "under_file", "proc",
                         "empty", "long_name", "nul"])
    if choice == "fresh":
        return str(work.fresh(suffix)), True, "fresh"
    if choice == "nested":
        return str(work.fresh() / "a" / "b" / f"c{suffix}"), True, "nested"
    if choice == "existing_folder":
        return str(work.folder), folder, "an existing folder"
    if choice == "existing_file":
        return str(work.overwritable), not folder, "an existing file"
    if choice == "under_file":
        return str(work.file / f"x{suffix}"), False, "under a file"
    if choice == "proc":
        return f"/proc/no_such_dir/x{suffix}", False, "unwritable"
    if choice == "empty":
        return "", False, "empty"
    if choice == "long_name":
        return str(work.root / ("n" * 300 + suffix)), False, "name too long"
    return str(work.root / f"a\0b{suffix}"), False, "NUL in path"


def spec_source(rnd: random.Random, work: Workdir) -> tuple[str, bool | None, str, bool]:
    """A NAME_OR_YAML argument: (text, valid, why, is_reference)."""
    choice = rnd.choice(["reference", "reference", "yaml", "yaml", "arch", "arch", "hostile_yaml", "hostile_name"])
    if choice == "reference":
        return rnd.choice(REFERENCES), True, "reference", True
    if choice == "yaml":
        import yaml

        case = spec_case(rnd)
        text = yaml.safe_dump(case.value, sort_keys=False, allow_unicode=True)
        return str(work.write(text.encode())), case.valid, f"spec file: {case.why}", False
    if choice == "arch":
        case = arch_case(rnd, random_arch_string(rnd))
        return case.value, case.valid, f"arch string: {case.why}", False
    if choice == "hostile_yaml":
        data, how = hostile_yaml(rnd)
        return str(work.write(data)), False, f"hostile file: {how}", False
    name = rnd.choice(["no_such_net", "", "x" * 5000, "/nonexistent/spec.yaml", str(work.folder), str(work.big_yaml),
                       str(work.file), "mobilenet_v3_large\n", "stem_|head", str(work.garbage)])
    return name, False, f"bad source {name[:40]!r}", False


# --------------------------------------------------------------------------- per CLI
WIDTH = Number("float", 0.1, 4)
RESOLUTION = Number("int", MIN_RES, MAX_RES)


def _common_spec_flags(rnd, work, argv, problems, is_reference) -> None:
    if rnd.random() < 0.3:
        text = WIDTH.draw(rnd)
        if WIDTH.ok(text) and not is_reference:
            text = "nan"  # a valid width on a file spec may push channels past the bound: keep the oracle exact
        argv += ["--width", text]
        if not WIDTH.ok(text):
            problems.append(f"--width {text!r}")
    if rnd.random() < 0.3:
        text = RESOLUTION.draw(rnd)
        argv += ["--resolution", text]
        if not RESOLUTION.ok(text):
            problems.append(f"--resolution {text!r}")


def describe_case(rnd: random.Random, work: Workdir) -> Case:
    source, valid, why, is_reference = spec_source(rnd, work)
    argv, problems = [source], []
    _common_spec_flags(rnd, work, argv, problems, is_reference)
    if rnd.random() < 0.2:
        number = Number("int", 1, MAX_CLASSES)
        text = number.draw(rnd)
        argv += ["--num-classes", text]
        if not number.ok(text):
            problems.append(f"--num-classes {text!r}")
    if rnd.random() < 0.5:
        argv.append("--json")
    return _case("describe", argv, valid, why, problems)


def export_case(rnd: random.Random, work: Workdir) -> Case:
    source, valid, why, is_reference = spec_source(rnd, work)
    argv, problems = [source], []
    _common_spec_flags(rnd, work, argv, problems, is_reference)
    outputs = rnd.choice(["timm", "yaml", "yaml_timm", "onnx_bad", "weights_bad", "nothing"])
    if outputs in ("timm", "yaml_timm"):
        argv.append("--timm")
    if outputs in ("yaml", "yaml_timm"):
        path, ok, reason = output_path(rnd, work, folder=False, suffix=".yaml")
        argv += ["--yaml", path]
        if not ok:
            problems.append(f"--yaml {reason}")
    if outputs == "onnx_bad":  # a usable --onnx would export for seconds: only unusable ones here
        path, ok, reason = output_path(rnd, work, folder=False, suffix=".onnx")
        while ok:
            path, ok, reason = output_path(rnd, work, folder=False, suffix=".onnx")
        argv += ["--onnx", path]
        problems.append(f"--onnx {reason}")
    if outputs == "weights_bad":
        weights = rnd.choice([work.garbage, work.empty, work.not_a_dict, work.tensors, work.folder,
                              work.root / "missing.pt"])
        argv += ["--weights", str(weights)] + (["--onnx", str(work.fresh(".onnx"))] if rnd.random() < 0.8 else [])
        problems.append(f"--weights {Path(weights).name}")
    if outputs == "nothing":
        problems.append("nothing to do")
    return _case("export", argv, valid, why, problems)


def predict_case(rnd: random.Random, work: Workdir, hostile_targets: bool = True) -> Case:
    """``hostile_targets=False`` keeps the target valid (only the spec and numbers are hostile)."""
    source, valid, why, is_reference = spec_source(rnd, work)
    argv, problems = [source], []
    target = rnd.choice(["pixel1", "pixel1", "pixel1", "host-ort-1t", "nope", "", str(work.file),
                         str(work.write(b"kind: [1\n")), str(work.write(b"kind: magic\n")), "--"]
                        if hostile_targets else ["pixel1"])
    argv += ["--target", target]
    if target == "host-ort-1t":
        valid = None if valid else valid  # a measured table may lack the spec's ops: refusing them is right
    elif target != "pixel1":
        problems.append(f"--target {target[-30:]!r}")
    _common_spec_flags(rnd, work, argv, problems, is_reference)
    if rnd.random() < 0.5:
        argv.append("--json")
    return _case("predict", argv, valid, why, problems)


def profile_case(rnd: random.Random, work: Workdir) -> Case:
    """Always at least one hostile value (a valid list would start measuring)."""
    numbers = {"--threads": Number("int", 1), "--warmup": Number("int", 0), "--repeats": Number("int", 1),
               "--rounds": Number("int", 1), "--chunk": Number("int", 1), "--seed": Number("int", 0),
               "--resolution": Number("int", MIN_RES, MAX_RES)}
    argv = ["--backend", "onnxruntime", "--threads", "1", "--specs", "mobilenet_v3_small"]
    out = str(work.fresh(".csv"))
    problems: list[str] = []
    while not problems:
        kind = rnd.choice(["number", "number", "out", "backend", "target", "statistic", "specs", "space"])
        if kind == "number":
            flag = rnd.choice(sorted(numbers))
            text = numbers[flag].draw(rnd)
            argv += [flag, text]
            if not numbers[flag].ok(text):
                problems.append(f"{flag} {text!r}")
        elif kind == "out":
            out, ok, reason = output_path(rnd, work, folder=False, suffix=".csv")
            if not ok:
                problems.append(f"--out {reason}")
        elif kind == "backend":
            argv += ["--backend", rnd.choice(["bogus", "", "ONNXRUNTIME", "tflite2"])]
            problems.append("--backend")
        elif kind == "target":
            argv += ["--target", rnd.choice(["nope", "", str(work.file), str(work.write(b"kind: [1\n"))])]
            problems.append("--target")
        elif kind == "statistic":
            argv += ["--statistic", rnd.choice(["mean", "", "MIN"])]
            problems.append("--statistic")
        elif kind == "specs":
            source, valid, why, _ = spec_source(rnd, work)
            if valid is False:
                argv[argv.index("--specs") + 1] = source
                problems.append(f"--specs {why}")
        else:
            argv = [a for a in argv if a not in ("--specs", "mobilenet_v3_small")]
            argv += ["--space", rnd.choice(["nope", "", str(work.file), str(work.write(b"stages: [\n"))])]
            problems.append("--space")
    return _case("profile", argv + ["--out", out, "--no-progress"], True, "valid", problems)


PROXY_VALID = ["lr=0.05", "batch_size=32", "optimizer=adamw", "schedule=cosine", "augment=none", "device=cpu",
               "label_smoothing=0.0", "max_steps=10", "max_steps=null", "grad_clip_norm=null", "momentum=0.5",
               "bn_recalibration_batches=0"]
PROXY_HOSTILE = ["lr=[1", "lr=abc", "lr=-1", "lr=.inf", "lr=.nan", "foo=1", "batch_size=0", "batch_size=1.5",
                 "epochs=0", "epochs=100000", "epochs=.inf", "optimizer=adam", "device=tpu", "noequals", "=5", "lr=",
                 "lr=&a [1]", "lr=" + "[" * 80 + "]" * 80, "lr=" + "1" * 300, "momentum=1", "warmup_fraction=1",
                 "seed=3", "threads=2", "lr={a: 1}", "batch_size=true", "lr=1e5"]


def _run_flags(rnd, work, table: dict, argv: list, problems: list, count: int) -> dict:
    chosen = {}
    for flag in rnd.sample(sorted(table), min(count, len(table))):
        spec = table[flag]
        if isinstance(spec, Number):
            text = spec.draw(rnd)
            ok = spec.ok(text)
        elif isinstance(spec, tuple):  # choices: (valid values, hostile values)
            text = rnd.choice(spec[0] + spec[1])
            ok = text in spec[0]
        elif spec == "out":
            text, ok, _ = output_path(rnd, work, folder=True, suffix="")
        elif spec == "data":
            text = rnd.choice(["default", "default", "bogus", "", "cifar10", "cifar10:", f"cifar10:{work.root}/none",
                               f"imagefolder:{work.file}", f"imagefolder:{work.folder}", "default:x", "DEFAULT"])
            ok = text == "default" or text == f"imagefolder:{work.folder}"
        else:
            raise KeyError(spec)
        argv += [flag, text]
        chosen[flag] = text
        if not ok:
            problems.append(f"{flag} {text[:40]!r}")
    return chosen


def _proxy_flags(rnd, argv: list, problems: list) -> list[str]:
    items = []
    for _ in range(rnd.choice([0, 0, 1, 2])):
        item = rnd.choice(PROXY_VALID + PROXY_HOSTILE)
        argv += ["--proxy", item]
        if item not in PROXY_VALID:
            problems.append(f"--proxy {item[:40]!r}")
        if any(i.partition("=")[0].strip() == item.partition("=")[0].strip() for i in items):
            problems.append(f"--proxy {item.partition('=')[0][:20]!r} twice")
        items.append(item)
    return items


def search_case(rnd: random.Random, work: Workdir) -> Case:
    exponent = Number("float", -10, 0)
    table = {"--target-ms": Number("float", 0, None, open_lo=True), "--w": exponent, "--alpha": exponent,
             "--beta": exponent, "--children": Number("int", 1, 1_000_000),
             "--epochs": Number("float", 0, 1000, open_lo=True), "--proxy-resolution": Number("int", 8, 512),
             "--seed": Number("int", 0, 2**32 - 1), "--concurrency": Number("int", 1, 1024),
             "--cpus-per-trial": Number("float", 0, 1024, open_lo=True), "--gpus-per-trial": Number("float", 0, 64),
             "--retries": Number("int", 0, 100), "--rl-batch-size": Number("int", 2, 10_000),
             "--target": (["pixel1", "host-ort-1t"], ["nope", "", "../x.yaml", str(work.bad_target)]),
             "--space": (["mobilenetv3", "mnasnet"], ["nope", "", "x.yaml", str(work.bad_target)]),
             "--strategy": (["rl", "random", "evolution"], ["RL", "", "grid"]), "--out": "out", "--data": "data"}
    argv: list[str] = ["--dry-run"]
    problems: list[str] = []
    chosen = _run_flags(rnd, work, table, argv, problems, rnd.randint(1, 4))
    if "--out" not in chosen:
        argv += ["--out", str(work.fresh())]
    items = _proxy_flags(rnd, argv, problems)
    if rnd.random() < 0.1:
        argv.append("--hard")
        if "--alpha" in chosen or "--beta" in chosen:
            problems.append("--hard with --alpha/--beta")
    gpus = chosen.get("--gpus-per-trial")
    if gpus is not None and table["--gpus-per-trial"].ok(gpus) and float(gpus) > 1 and float(gpus) != int(float(gpus)):
        problems.append("a fraction of more than one GPU")
    if "--epochs" in chosen and any(i.startswith("epochs=") for i in items):
        problems.append("--epochs with --proxy epochs")
    return _case("search", argv, True, "valid", problems)


def netadapt_case(rnd: random.Random, work: Workdir) -> Case:
    source, valid, why, _ = spec_source(rnd, work) if rnd.random() < 0.3 else ("mobilenet_v3_small", True, "valid",
                                                                                True)
    table = {"--step-decay": Number("float", 0, 1, open_lo=True), "--finetune-steps": Number("int", 0, 10_000_000),
             "--long-finetune-steps": Number("int", 0, 10_000_000),
             "--chosen-finetune-steps": Number("int", 0, 10_000_000), "--noise-seeds": Number("int", 0, 16),
             "--finetune-lr": Number("float", 0, 10, open_lo=True),
             "--pretrain-epochs": Number("float", 0, 1000, open_lo=True), "--val-size": Number("int", 0, 10_000_000),
             "--proxy-resolution": Number("int", 8, 512), "--seed": Number("int", 0, 2**32 - 1),
             "--concurrency": Number("int", 1, 1024), "--cpus-per-proposal": Number("float", 0, 1024, open_lo=True),
             "--gpus-per-proposal": Number("float", 0, 64), "--max-iterations": Number("int", 1, 100_000),
             "--schedule": (["constant", "decay"], ["linear", ""]), "--select": (["ratio", "accuracy"], ["best", ""]),
             "--proposals": (["expansion", "bottleneck", "expansion,bottleneck", " expansion "],
                             ["", ",", "foo", "expansion,foo"]),
             "--target": (["pixel1"], ["nope", "", str(work.bad_target)]), "--out": "out", "--data": "data"}
    argv, problems = [source, "--dry-run"], []
    budget = rnd.choice(["ms", "ratio", "ratio", "both", "none"])
    if budget in ("ms", "both"):
        number = Number("float", 0, None, open_lo=True)
        text = number.draw(rnd)
        argv += ["--budget-ms", text]
        if not number.ok(text):
            problems.append("--budget-ms")
    if budget in ("ratio", "both"):
        number = Number("float", 0, 1, open_lo=True)
        text = number.draw(rnd)
        argv += ["--budget-ratio", text]
        if not number.ok(text):
            problems.append("--budget-ratio")
    if budget in ("both", "none"):
        problems.append(f"budget: {budget}")
    step = rnd.choice(["none", "none", "ratio", "ms", "both"])
    if step in ("ratio", "both"):
        number = Number("float", 0, 0.999999, open_lo=True)
        text = number.draw(rnd)
        argv += ["--step-ratio", text]
        if not number.ok(text):
            problems.append("--step-ratio")
    if step in ("ms", "both"):
        number = Number("float", 0, None, open_lo=True)
        text = number.draw(rnd)
        argv += ["--step-ms", text]
        if not number.ok(text):
            problems.append("--step-ms")
    if step == "both":
        problems.append("--step-ratio with --step-ms")
    if rnd.random() < 0.15:
        weights = rnd.choice([work.garbage, work.empty, work.not_a_dict, work.folder, work.root / "missing.pt",
                              work.tensors])
        argv += ["--weights", str(weights)]
        if weights != work.tensors:
            problems.append(f"--weights {Path(weights).name}")
    chosen = _run_flags(rnd, work, table, argv, problems, rnd.randint(0, 4))
    if "--out" not in chosen:
        argv += ["--out", str(work.fresh())]
    items = _proxy_flags(rnd, argv, problems)
    gpus = chosen.get("--gpus-per-proposal")
    if gpus is not None and table["--gpus-per-proposal"].ok(gpus):
        if float(gpus) > 1 and float(gpus) != int(float(gpus)):
            problems.append("a fraction of more than one GPU")
    for flag, key in (("--pretrain-epochs", "epochs"), ("--proxy-resolution", "resolution")):
        if flag in chosen and any(i.startswith(f"{key}=") for i in items):
            problems.append(f"{flag} with --proxy {key}")
    return _case("netadapt", argv, valid, why, problems)


def _case(cli: str, argv: list[str], valid: bool | None, why: str, problems: list[str]) -> Case:
    if problems:
        return Case(cli, argv, False, "; ".join(problems + ([why] if valid is False else [])))
    return Case(cli, argv, valid, why)


MAKERS = {"describe": describe_case, "export": export_case, "predict": predict_case, "profile": profile_case,
          "search": search_case, "netadapt": netadapt_case}


def argv_case(cli: str, rnd: random.Random, work: Workdir) -> Case:
    """One hostile (or valid) argument list for ``cli`` (a key of :data:`MAKERS`)."""
    return MAKERS[cli](rnd, work)
