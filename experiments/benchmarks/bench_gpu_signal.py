"""Children per hour of the GPU signal profile on one GPU, and on a 224 px image folder.

    python -m experiments.bench_gpu_signal [--children 12] [--per-gpu 4] [--cpu-children 1]
        [--folder-images 40] [--out results/bench_gpu_signal.json]

Three measurements, each printed and written to ``--out``:

1. ``gpu_profile``: ``--children`` random children of the ``mobilenetv3`` space trained with the
   ``gpu`` profile (:func:`proxytask.profiles.signal`) on the embedded data, ``--per-gpu``
   processes sharing one GPU at once (what ``--gpus-per-trial 1/per-gpu`` does in a search):
   wall time, children per hour, seconds per child.
2. ``cpu_reference``: the first ``--cpu-children`` of the same children with the same settings on
   one CPU core (device cpu, no autocast): the speed-up per child over one core.
3. ``imagefolder_224``: an image folder of our own making (``--folder-images`` 224 x 224 crops
   per class cut from the 17 embedded photographs, written as PNG files to a temporary folder, so
   it goes through the same ``imagefolder:`` loader as user data) trained at 224 px with the gpu
   profile: children per hour on one GPU.

Needs a CUDA device (``--device cuda``, the default); ``--device cpu`` runs the same code on the
CPU for a smoke test (no figure from it is a GPU figure).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

_DATA = {}


def _init(data, proxy) -> None:
    _DATA.update(data=data, proxy=proxy)


def _train(spec) -> dict:
    from proxytask.train import train_child

    result = train_child(spec, _DATA["data"], _DATA["proxy"])
    return {"name": spec.name, "status": result.status, "val_accuracy": result.accuracy,
            "test_accuracy": result.test_accuracy, "seconds": result.seconds, "reason": result.reason}


def _run_children(specs, data, proxy, processes: int) -> dict:
    start = time.perf_counter()
    if processes > 1:
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(processes, initializer=_init, initargs=(data, proxy)) as pool:
            rows = list(pool.imap_unordered(_train, specs))
    else:
        _init(data, proxy)
        rows = [_train(spec) for spec in specs]
    wall = time.perf_counter() - start
    return {"children": len(rows), "processes": processes, "wall_s": round(wall, 2),
            "children_per_hour": round(3600 * len(rows) / wall, 1),
            "seconds_per_child": round(float(np.mean([r["seconds"] for r in rows])), 2),
            "failed": [r for r in rows if r["status"] != "ok"], "rows": rows}


def make_image_folder(root: Path, per_class: int, size: int = 224, seed: int = 0) -> Path:
    """``per_class`` random ``size`` crops of each embedded photograph, as PNG files, one folder per class."""
    from PIL import Image

    from proxytask.data import DEFAULT_FILE

    rng = np.random.default_rng(seed)
    with np.load(DEFAULT_FILE) as archive:
        images, names = archive["images"], [str(n) for n in archive["names"]]
    for image, name in zip(images, names):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            r, c = rng.integers(0, image.shape[0] - size + 1, size=2)
            Image.fromarray(image[r:r + size, c:c + size]).save(root / name / f"{i:03d}.png")
    return root


def _imagefolder_224(specs, gpu_settings: dict, images: int, per_gpu: int) -> dict:
    """The gpu profile on a generated folder of 224 px photographs, trained at 224 px for one epoch."""
    from proxytask.profiles import signal

    with tempfile.TemporaryDirectory() as tmp:
        folder = make_image_folder(Path(tmp) / "photos224", images)
        big = signal("gpu", data=f"imagefolder:{folder}", overrides={**gpu_settings, "resolution": 224, "epochs": 1.0})
        big_data = big.load()
        return {**_run_children(specs, big_data, big.proxy, per_gpu), "data": big_data.summary(),
                "proxy": big.describe()["proxy"]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.bench_gpu_signal", description=__doc__.splitlines()[0])
    p.add_argument("--children", type=int, default=12)
    p.add_argument("--per-gpu", type=int, default=4, help="children sharing the GPU at once")
    p.add_argument("--cpu-children", type=int, default=1, help="children timed on one CPU core (0: skip)")
    p.add_argument("--folder-images", type=int, default=40, help="224 px images per class in the image folder")
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    p.add_argument("--proxy", action="append", default=[], metavar="KEY=VALUE",
                   help="override a ProxyConfig field of the gpu profile (e.g. max_steps=2 for a smoke test)")
    p.add_argument("--out", default="results/bench_gpu_signal.json")
    a = p.parse_args(argv)
    for flag, value, low in (("--children", a.children, 1), ("--per-gpu", a.per_gpu, 1),
                             ("--cpu-children", a.cpu_children, 0), ("--folder-images", a.folder_images, 3)):
        if value < low:
            p.error(f"{flag}: {value} must be at least {low}")
    import torch

    from jobs.cli import parse_overrides
    from proxytask.profiles import signal

    overrides = parse_overrides(a.proxy, p, example="max_steps=2")
    from search_spaces.spaces import get_space

    if a.device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda: torch sees no CUDA device; run on a machine with a GPU or pass --device cpu",
              file=sys.stderr)
        return 2
    space = get_space("mobilenetv3")
    specs = [space.sample_spec(random.Random(i))[1] for i in range(a.children)]
    gpu_settings = {**overrides, **({} if a.device == "cuda" else {"device": "cpu", "amp": "none"})}
    sig = signal("gpu", overrides=gpu_settings)
    data = sig.load()
    summary: dict = {"command": "python -m experiments.bench_gpu_signal " + " ".join(sys.argv[1:] if argv is None
                                                                                        else argv),
                     "device": torch.cuda.get_device_name(0) if a.device == "cuda" else "cpu",
                     "torch": torch.__version__, "signal": sig.describe(), "data": data.summary()}
    summary["gpu_profile"] = _run_children(specs, data, sig.proxy, a.per_gpu)
    print(f"gpu profile: {summary['gpu_profile']['children_per_hour']} children/h "
          f"({summary['gpu_profile']['seconds_per_child']} s per child, {a.per_gpu} sharing the device)", flush=True)
    if a.cpu_children:
        cpu = sig.proxy.replace(device="cpu", amp="none", channels_last=False, threads=1)
        summary["cpu_reference"] = _run_children(specs[:a.cpu_children], data, cpu, 1)
        by_name = {r["name"]: r["seconds"] for r in summary["gpu_profile"]["rows"]}
        ratios = [r["seconds"] / by_name[r["name"]] for r in summary["cpu_reference"]["rows"]]
        summary["speedup_per_child_over_one_core"] = round(float(np.mean(ratios)), 1)
        print(f"one CPU core: {summary['cpu_reference']['seconds_per_child']} s per child; "
              f"speed-up per child {summary['speedup_per_child_over_one_core']}x", flush=True)
    summary["imagefolder_224"] = _imagefolder_224(specs[:max(2, a.children // 2)], gpu_settings, a.folder_images,
                                                  a.per_gpu)
    print(f"224 px image folder: {summary['imagefolder_224']['children_per_hour']} children/h "
          f"({summary['imagefolder_224']['seconds_per_child']} s per child)", flush=True)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2, default=str) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
