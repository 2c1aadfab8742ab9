"""Decode and reload figures of the data cache (proxytask.cache), recorded to results/data_cache.json
and results/data_cache.md. Each part records its own command, elapsed time and figures.

    python -m experiments.benchmarks.bench_data tiny --root /work/data/tiny-imagenet-200
    python -m experiments.benchmarks.bench_data generate --root /work/data/bench-imagenet
    python -m experiments.benchmarks.bench_data scale --root /work/data/bench-imagenet
    python -m experiments.benchmarks.bench_data fullsize

* ``tiny``: the whole Tiny-ImageNet folder (every image: training, held-out validation, test) decoded
  at 64 px by ``--workers`` processes into a fresh cache (targets on 2 cores: <= 120 s, with the
  progress bar; peak memory of this process and its workers < 2 GB), then reloaded by a fresh
  process through ``proxytask.load_data`` (target <= 5 s).
* ``generate``: writes an ImageNet-layout folder (``train/<wnid>/*.JPEG``, flat ``val/`` with
  ``LOC_val_solution.csv``) of ``--images`` small JPEGs (128-160 x 96-120 px, quality 90, resized
  from ``--distinct`` Tiny-ImageNet training images and written round-robin) outside the checkout.
  Untimed; run it niced.
* ``scale``: decodes that folder at 64 px on 2 workers (all of it), and a 200-class subset on 1 and
  2 workers at 64, 96 and 128 px: images per second, per core, peak memory, cache bytes.
* ``fullsize``: one core decoding JPEGs of ImageNet's typical size (500 x 375, quality 90, about
  100 KB each like ILSVRC-2012's) at 64, 96 and 128 px, for the extrapolation to ImageNet
  (1,281,167 training + 50,000 validation images).

Peak memory is the largest sum of the resident set sizes of this process and all its descendants,
sampled every 0.1 s from /proc (shared library pages count once per process: an overestimate).
Timed parts should run under ``flock /tmp/cpu.lock`` on a machine shared with other work.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

RESULTS = Path("results/data_cache.json")
IMAGENET_IMAGES = 1_281_167 + 50_000
TARGETS = {"first_decode_s": 120, "reload_s": 5, "peak_rss_gb": 2}


# --------------------------------------------------------------------------- measuring
class PeakMemory:
    """The peak of (RSS of this process + RSS of every descendant), sampled in a thread."""

    def __init__(self, interval_s: float = 0.1):
        self.interval_s, self.peak, self._stop = interval_s, 0, threading.Event()

    @staticmethod
    def _rss(pid: int) -> int:
        try:
            with open(f"/proc/{pid}/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            return 0

    @staticmethod
    def _children(pid: int) -> list[int]:
        found = []
        try:
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/children") as f:
                    found += [int(p) for p in f.read().split()]
        except OSError:
            pass
        return found

    def sample(self) -> int:
        total, stack = 0, [os.getpid()]
        while stack:
            pid = stack.pop()
            total += self._rss(pid)
            stack += self._children(pid)
        return total

    def _loop(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.sample())
            self._stop.wait(self.interval_s)

    def __enter__(self):
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def _decode(source: str, resolution: int, workers: int, cache: Path, progress: bool = True) -> dict:
    """Decode ``source`` into a fresh cache under ``cache``: seconds, images, peak memory."""
    from proxytask.cache import open_cache
    from proxytask.sources import list_files

    shutil.rmtree(cache, ignore_errors=True)
    start, cpu_start = time.perf_counter(), _cpu_seconds()
    with PeakMemory() as memory:
        files = list_files(source)
        listed = time.perf_counter() - start
        cached = open_cache(files, resolution, cache_dir=cache, workers=workers, progress=progress)
    seconds, cpu = time.perf_counter() - start, _cpu_seconds() - cpu_start
    size = sum(p.stat().st_size for p in cached.folder.glob("*.u8"))
    return {"source": source, "resolution": resolution, "workers": workers, "images": cached.decoded,
            "seconds": round(seconds, 1), "listing_s": round(listed, 2),
            "images_per_s": round(cached.decoded / seconds), "images_per_s_per_core": round(cached.decoded / seconds
                                                                                             / workers),
            "cpu_s": round(cpu, 1), "images_per_cpu_s": round(cached.decoded / cpu),
            "peak_rss_gb": round(memory.peak / 2 ** 30, 2), "cache_gb": round(size / 2 ** 30, 2)}


def _cpu_seconds() -> float:
    """CPU seconds of this process and its finished children (the decode workers): on a shared
    machine, images per CPU second is the rate one free core would give."""
    import resource

    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _reload(source: str, resolution: int, cache: Path) -> dict:
    """A fresh process loads ``source`` through load_data from the cache: seconds in load_data,
    and the whole process's wall time (interpreter and torch import included)."""
    code = ("import time; t = time.perf_counter(); from proxytask.data import load_data; i = time.perf_counter(); "
            f"d = load_data({source!r}, resolution={resolution}, cache_dir={str(cache)!r}, progress=False); "
            "x = d.train_x[:: max(1, len(d.train_y) // 1000)].float().mean(); e = time.perf_counter(); "
            "print(round(e - i, 2), round(i - t, 2), len(d.train_y), len(d.val_y), len(d.test_y), d.num_classes)")
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=600)
    wall = time.perf_counter() - start
    load_s, import_s, train, val, test, classes = out.stdout.split()
    return {"load_data_s": float(load_s), "import_s": float(import_s), "process_wall_s": round(wall, 2),
            "splits": {"train": int(train), "val": int(val), "test": int(test)}, "classes": int(classes)}


# --------------------------------------------------------------------------- parts
def part_tiny(a) -> dict:
    source = f"tinyimagenet:{a.root}"
    cache = Path(a.cache) / "tiny"
    decode = _decode(source, 64, a.workers, cache)
    reload = _reload(source, 64, cache)
    met = {"first_decode_s": decode["seconds"] <= TARGETS["first_decode_s"],
           "reload_s": reload["load_data_s"] <= TARGETS["reload_s"],
           "peak_rss_gb": decode["peak_rss_gb"] < TARGETS["peak_rss_gb"]}
    return {"decode": decode, "reload": reload, "targets": TARGETS, "met": met}


def part_generate(a) -> dict:
    """Untimed: the generated ImageNet-layout folder. A pool of ``--distinct`` JPEGs is encoded
    from Tiny-ImageNet training images, then written round-robin as the folder's files (a
    decode costs the same whatever file holds the bytes). Resumable: finished classes are kept."""
    import io

    import numpy as np
    from PIL import Image

    from proxytask.sources import list_files

    root = Path(a.root)
    start = time.perf_counter()
    sources = list_files(f"tinyimagenet:{a.tiny}").paths["train"]
    sizes = [(128, 96), (144, 108), (160, 120), (120, 160)]
    pool = []
    for i in range(a.distinct):
        buffer = io.BytesIO()
        with Image.open(sources[i * 37 % len(sources)]) as im:
            im.convert("RGB").resize(sizes[i % 4], Image.BICUBIC).save(buffer, "JPEG", quality=90)
        pool.append(buffer.getvalue())
    classes, val = 1000, a.images // 20
    per_class = (a.images - val) // classes
    written = 0
    for k in range(classes):
        folder = root / "train" / f"n{k:08d}"
        if (folder / ".done").exists():
            continue
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            (folder / f"n{k:08d}_{i}.JPEG").write_bytes(pool[(k * per_class + i) % len(pool)])
        (folder / ".done").write_text("done\n")
        written += per_class
    (root / "val").mkdir(parents=True, exist_ok=True)
    for i in range(val):
        (root / "val" / f"ILSVRC2012_val_{i + 1:08d}.JPEG").write_bytes(pool[(7 + 13 * i) % len(pool)])
    labels = np.random.default_rng(0).integers(0, classes, val)
    rows = ["ImageId,PredictionString"] + [f"ILSVRC2012_val_{i + 1:08d},n{labels[i]:08d} 0 0 1 1" for i in range(val)]
    (root / "LOC_val_solution.csv").write_text("\n".join(rows) + "\n")
    return {"root": str(root), "train_images": classes * per_class, "val_images": val, "classes": classes,
            "distinct_jpegs": len(pool), "mean_file_kb": round(sum(map(len, pool)) / len(pool) / 1024, 1),
            "written_now": written + val, "seconds": round(time.perf_counter() - start, 1)}


def part_scale(a) -> dict:
    cache = Path(a.cache) / "scale"
    full = _decode(f"imagenet:{a.root}", 64, 2, cache)
    runs = [full]
    subset = f"imagenet:{a.root}?classes=200"
    for resolution in (64, 96, 128):
        for workers in ((1, 2) if resolution == 64 else (2,)):
            runs.append(_decode(subset, resolution, workers, cache, progress=False))
            print(json.dumps(runs[-1]), flush=True)
    shutil.rmtree(cache, ignore_errors=True)
    return {"runs": runs}


def part_fullsize(a) -> dict:
    """One core: CPU ms per image decoding 500 x 375 JPEGs at 64, 96, 128 px (and wall ms, which
    other work on a shared machine inflates); the extrapolation uses the CPU figure."""
    import numpy as np
    from PIL import Image

    from proxytask.cache import decode_image
    from proxytask.sources import list_files

    folder = Path(a.cache) / "fullsize"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    pool = list_files(f"tinyimagenet:{a.tiny}").paths["train"]
    rng = np.random.default_rng(0)
    paths = []
    for i in range(a.count):
        with Image.open(pool[i * 97 % len(pool)]) as im:
            big = np.asarray(im.convert("RGB").resize((500, 375), Image.BICUBIC), dtype=np.int16)
        # noise for camera-like detail: about 100 KB a file, near ILSVRC-2012's mean (140 GB / 1.28 M images)
        big = np.clip(big + rng.integers(-36, 37, big.shape), 0, 255).astype(np.uint8)
        Image.fromarray(big).save(folder / f"{i}.JPEG", quality=90)
        paths.append(str(folder / f"{i}.JPEG"))
    mean_kb = sum(os.path.getsize(p) for p in paths) / len(paths) / 1024
    out = {"images": len(paths), "size": "500 x 375", "mean_file_kb": round(mean_kb, 1), "per_resolution": {}}
    for resolution in (64, 96, 128):
        decode_image(paths[0], resolution)
        start, cpu_start = time.perf_counter(), time.process_time()
        for p in paths:
            decode_image(p, resolution)
        ms = 1000 * (time.perf_counter() - start) / len(paths)
        cpu_ms = 1000 * (time.process_time() - cpu_start) / len(paths)
        out["per_resolution"][resolution] = {"ms_per_image_one_core": round(cpu_ms, 2), "wall_ms_per_image": round(ms, 2)}
    shutil.rmtree(folder, ignore_errors=True)
    return out


def extrapolate(results: dict) -> dict:
    """ImageNet (1,331,167 images) at 64, 96, 128 px: decode time on 1, 2 and 16 free cores and
    cache size, from the one-core CPU cost of full-size JPEGs (``fullsize``) and the CPU work per
    image with 2 workers against 1 (``scale``; 1.0: no overhead from running in parallel)."""
    full = results.get("fullsize", {}).get("per_resolution")
    if not full:
        return {}
    efficiency = 1.0
    runs = results.get("scale", {}).get("runs", [])
    one = [r for r in runs if r["workers"] == 1 and r["resolution"] == 64 and "classes=200" in r["source"]]
    two = [r for r in runs if r["workers"] == 2 and r["resolution"] == 64 and "classes=200" in r["source"]]
    if one and two and one[0].get("images_per_cpu_s") and two[0].get("images_per_cpu_s"):
        # CPU time, not wall time: on the shared machine wall time measures the other jobs too
        efficiency = min(1.0, two[0]["images_per_cpu_s"] / one[0]["images_per_cpu_s"])
    table = {}
    for resolution, row in full.items():
        seconds_one_core = IMAGENET_IMAGES * row["ms_per_image_one_core"] / 1000
        table[str(resolution)] = {
            "one_core_h": round(seconds_one_core / 3600, 2),
            "two_cores_h": round(seconds_one_core / (2 * efficiency) / 3600, 2),
            "sixteen_cores_h_if_linear": round(seconds_one_core / 16 / 3600, 2),
            "cache_gb": round(IMAGENET_IMAGES * 3 * int(resolution) ** 2 / 2 ** 30, 1)}
    return {"images": IMAGENET_IMAGES, "two_worker_efficiency": round(efficiency, 2), "by_resolution_px": table}


# --------------------------------------------------------------------------- recording
def record(part: str, figures: dict, seconds: float, command: str, out: Path) -> dict:
    results = json.loads(out.read_text()) if out.is_file() else {}
    results[part] = {"command": command, "elapsed_s": round(seconds, 1), **figures,
                     "load_average_1min_at_end": round(os.getloadavg()[0], 1),
                     "machine": f"{os.cpu_count()} cores", "measured_at": time.strftime("%Y-%m-%d %H:%M UTC",
                                                                                         time.gmtime())}
    results = json.loads(json.dumps(results))  # keys as JSON has them (resolutions as strings)
    results["imagenet_extrapolation"] = extrapolate(results)
    from jobs.atomic import atomic_write_text

    atomic_write_text(out, json.dumps(results, indent=1) + "\n")
    atomic_write_text(out.with_suffix(".md"), markdown(results))
    return results


def markdown(results: dict) -> str:
    lines = ["# Data cache: decode and reload figures", "",
             "Made by `experiments/benchmarks/bench_data.py`; each part's command is below. Timed parts ran under",
             "`flock /tmp/cpu.lock` on the 2-core machine shared with other work.", ""]
    tiny = results.get("tiny")
    if tiny:
        d, r, met = tiny["decode"], tiny["reload"], tiny["met"]
        lines += ["## Tiny-ImageNet, every image at 64 px", "", f"`{tiny['command']}`", "",
                  "| figure | value | target | met |", "|---|---|---|---|",
                  f"| first decode ({d['images']:,} images, {d['workers']} workers) | {d['seconds']} s "
                  f"({d['images_per_s']:,} img/s) | <= 120 s | {met['first_decode_s']} |",
                  f"| CPU time of that decode (all processes) | {d.get('cpu_s')} s ({d.get('images_per_cpu_s')} "
                  f"img per CPU-second) | | |",
                  f"| peak memory (process + workers, RSS) | {d['peak_rss_gb']} GB | < 2 GB | {met['peak_rss_gb']} |",
                  f"| reload (load_data in a fresh process) | {r['load_data_s']} s (process {r['process_wall_s']} s) "
                  f"| <= 5 s | {met['reload_s']} |",
                  f"| cache size | {d['cache_gb']} GB | | |", ""]
    scale = results.get("scale")
    if scale:
        lines += ["## Scaling on a generated ImageNet-layout folder", "", f"`{scale['command']}`", "",
                  "| source | px | workers | images | wall s | img/s | img/s per worker | img per CPU-s | peak GB | "
                  "cache GB |", "|---|---|---|---|---|---|---|---|---|---|"]
        for run in scale["runs"]:
            lines.append(f"| `{run['source'].split('/')[-1]}` | {run['resolution']} | {run['workers']} | "
                         f"{run['images']:,} | {run['seconds']} | {run['images_per_s']:,} | "
                         f"{run['images_per_s_per_core']:,} | {run.get('images_per_cpu_s')} | {run['peak_rss_gb']} | "
                         f"{run['cache_gb']} |")
        lines.append("")
    full = results.get("fullsize")
    extra = results.get("imagenet_extrapolation")
    if full and extra:
        lines += ["## Extrapolation to ImageNet (1,281,167 train + 50,000 val)", "", f"`{full['command']}`", "",
                  f"One core decodes {full['size']} JPEGs ({full['mean_file_kb']} KB on average) at the CPU cost "
                  f"below (CPU time: the machine was shared, so wall time per image was higher). In `scale`, two "
                  f"workers decoded {extra['two_worker_efficiency']} times as many images per CPU-second as one "
                  f"(no parallel overhead), so the times below assume free cores; wall-clock scaling could not be "
                  f"measured on the shared machine.", "",
                  "| px | ms/image, 1 core | 1 core | 2 cores | 16 cores (if linear) | cache |", "|---|---|---|---|---|---|"]
        for resolution, row in extra["by_resolution_px"].items():
            ms = full["per_resolution"][resolution]["ms_per_image_one_core"]
            lines.append(f"| {resolution} | {ms} | {row['one_core_h']} h | {row['two_cores_h']} h | "
                         f"{row['sixteen_cores_h_if_linear']} h | {row['cache_gb']} GB |")
        lines.append("")
    generate = results.get("generate")
    if generate:
        lines += ["## The generated folder", "", f"`{generate['command']}`: {generate['train_images']:,} training "
                  f"images in {generate['classes']} classes and {generate['val_images']:,} validation images, "
                  f"128-160 x 96-120 px JPEGs ({generate.get('mean_file_kb')} KB on average) resized from "
                  f"{generate.get('distinct_jpegs')} Tiny-ImageNet training images, written round-robin.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m experiments.benchmarks.bench_data", description=__doc__.split("\n")[0])
    parser.add_argument("part", choices=("tiny", "generate", "scale", "fullsize"))
    parser.add_argument("--root", help="tiny: the Tiny-ImageNet folder; generate/scale: the generated folder")
    parser.add_argument("--tiny", default="/work/data/tiny-imagenet-200", help="Tiny-ImageNet (source images)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--images", type=int, default=210_000, help="generate: how many JPEGs")
    parser.add_argument("--distinct", type=int, default=5_000, help="generate: how many distinct JPEGs")
    parser.add_argument("--count", type=int, default=300, help="fullsize: how many JPEGs")
    parser.add_argument("--cache", default="/tmp/mnv3-bench-cache", help="scratch cache folder (deleted first)")
    parser.add_argument("--out", default=str(RESULTS))
    a = parser.parse_args(argv)
    if a.part in ("tiny", "generate", "scale") and not a.root:
        parser.error(f"{a.part} needs --root")
    command = "python -m experiments.benchmarks.bench_data " + " ".join(sys.argv[1:] if argv is None else argv)
    start = time.perf_counter()
    figures = {"tiny": part_tiny, "generate": part_generate, "scale": part_scale, "fullsize": part_fullsize}[a.part](a)
    results = record(a.part, figures, time.perf_counter() - start, command, Path(a.out))
    print(json.dumps({a.part: results[a.part], "imagenet_extrapolation": results["imagenet_extrapolation"]}, indent=1))


if __name__ == "__main__":
    main()
