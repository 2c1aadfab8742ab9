"""``python -m proxytask.supernet train|score|info``: the weight-sharing accuracy signal.

    python -m proxytask.supernet train [--space mobilenetv3] [--data default] [--profile cpu]
                                       [--epochs E] [--out DIR] [--resume] [--max-steps N]
    python -m proxytask.supernet score SPEC [SPEC ...] [--supernet DIR] [--nearest] [--json]
    python -m proxytask.supernet info [DIR]

``train`` trains the supernet of a space on a signal's data (sandwich rule, in-place
distillation) into ``--out`` (default: the cache folder ``runs/supernet/SPACE-KEY``, KEY a digest of
space, data and settings, which a later search reuses; there a killed run always continues). An
explicit ``--out`` holding an unfinished run continues with ``--resume``. ``score`` scores
networks (YAML files, reference names or arch strings) with a trained supernet: BN recalibrated,
validation and test accuracy; ``--nearest`` scores a network outside the space as its nearest
subnet and prints the MAdds and pixel1 distance. Bad input is one line and exit status 2.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from jobs.cli import (ArgumentParser, check_settings, checked_overrides, fail, integer, number, output_dir_problem,
                      parse_overrides, source_problem)

from .. import PROFILE_NAMES, SOURCE_KINDS

CACHE_ROOT = Path("runs/supernet")
# The main job's supernet: epochs over the cpu signal's 3,272 training images (51 steps each);
# see results/supernet/ for its cost and rank agreement. Real use: SupernetConfig().epochs or more.
MAIN_JOB_EPOCHS = 1.5


def default_out(space, data, source, proxy, config, patch=None) -> Path:
    from .training import cache_dir, cache_key, key_parts

    return cache_dir(CACHE_ROOT, space, cache_key(key_parts(space, data, source, proxy, config, patch)))


def _parser() -> ArgumentParser:
    p = ArgumentParser(prog="python -m proxytask.supernet", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train (or continue, or reuse) a supernet")
    t.add_argument("--space", default="mobilenetv3", help="search space name or YAML file")
    t.add_argument("--data", default="default", help="signal data source (default, imagefolder:PATH, tinyimagenet:PATH, ...)")
    t.add_argument("--profile", choices=PROFILE_NAMES, default="cpu", help="signal profile (proxytask.profiles)")
    t.add_argument("--epochs", type=number("a number of epochs", above=0, maximum=1000), default=MAIN_JOB_EPOCHS)
    t.add_argument("--random-subnets", type=integer(0, "a number of subnets", 64), default=2)
    t.add_argument("--checkpoint-every", type=integer(1, "a number of steps", 10_000_000), default=25)
    t.add_argument("--max-steps", type=integer(1, "a number of steps", 10_000_000),
                   help="stop after this many steps (a slice of the schedule; --resume continues)")
    t.add_argument("--threads", type=integer(1, "a number of threads", 1024), default=2)
    t.add_argument("--proxy", action="append", default=[], metavar="KEY=VALUE", help="a ProxyConfig setting")
    t.add_argument("--out", help="checkpoint folder (default: runs/supernet/SPACE-KEY, the cache)")
    t.add_argument("--resume", action="store_true", help="continue the unfinished run in --out")
    t.add_argument("--no-progress", action="store_true")
    s = sub.add_parser("score", help="score networks with a trained supernet")
    s.add_argument("specs", nargs="+", metavar="SPEC", help="YAML file, reference name or arch string")
    s.add_argument("--supernet", help="checkpoint folder (default: the newest under runs/supernet)")
    s.add_argument("--nearest", action="store_true", help="score a network outside the space as its nearest subnet")
    s.add_argument("--bn-batches", type=integer(0, "a number of batches", 10_000), default=4)
    s.add_argument("--val-size", type=integer(1, "a number of images", 10_000_000), default=500)
    s.add_argument("--threads", type=integer(1, "a number of threads", 1024), default=1)
    s.add_argument("--json", action="store_true")
    i = sub.add_parser("info", help="describe a checkpoint folder")
    i.add_argument("folder", nargs="?", help="checkpoint folder (default: every one under runs/supernet)")
    return p


def _train(a, parser) -> int:
    from search_spaces.spaces import get_space

    from ..profiles import signal
    from .model import SupernetError
    from .training import SupernetConfig, train_supernet

    problem = source_problem(a.data, SOURCE_KINDS)
    if problem:
        fail("--data", problem)
    if a.out and output_dir_problem(a.out):
        fail("--out", output_dir_problem(a.out))
    overrides = checked_overrides(a.proxy, lambda items: parse_overrides(items, parser, example="lr=0.05"),
                                  owned={"threads": "--threads", "epochs": "--epochs"})
    from ..train import ProxyConfig

    check_settings(ProxyConfig, overrides)
    try:
        space = get_space(a.space)
    except ValueError as err:
        fail("--space", str(err))
    try:
        sig = signal(a.profile, data=a.data, overrides={**overrides, "threads": a.threads})
        config = SupernetConfig(epochs=a.epochs, random_subnets=a.random_subnets, checkpoint_every=a.checkpoint_every)
        data = sig.load()
        out = Path(a.out) if a.out else default_out(space, data, a.data, sig.proxy, config, sig.patch)
        net, meta = train_supernet(space, data, a.data, sig.proxy, config, out=out, resume=a.resume or not a.out,
                                   max_steps=a.max_steps, progress=not a.no_progress, patch=sig.patch)
    except (SupernetError, ValueError, OSError) as err:
        print(f"error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    state = "finished" if meta.get("finished") else f"stopped at step {meta.get('step')} of {meta['total_steps']}"
    print(f"supernet {space.name} on {a.data}: {state}, {meta['seconds']:.0f} s of training; {out}")
    return 0


def _newest() -> Path | None:
    metas = sorted(CACHE_ROOT.glob("*/supernet.json"), key=lambda p: p.stat().st_mtime)
    return metas[-1].parent if metas else None


def _score(a) -> int:
    from search_spaces.spec import resolve_spec

    from ..profiles import Signal
    from ..train import ProxyConfig
    from .mapping import nearest_report
    from .model import SupernetError
    from .scoring import SupernetScorer
    from .training import load_supernet

    folder = Path(a.supernet) if a.supernet else _newest()
    if folder is None:
        fail("--supernet", f"no trained supernet under {CACHE_ROOT}; train one with python -m proxytask.supernet train")
    specs = []
    for text in a.specs:
        try:
            specs.append(resolve_spec(text))
        except ValueError as err:
            fail("SPEC", f"{text}: {' '.join(str(err).split())}")
    try:
        net, meta = load_supernet(folder)
        parts = meta["parts"]
        proxy = ProxyConfig.from_dict({**parts["settings"]["proxy"], "threads": a.threads})
        sig = Signal(profile="supernet", data=parts["data"]["source"], patch=parts["data"].get("patch"), proxy=proxy)
        data = sig.load()
        scorer = SupernetScorer(net, net.space, data, proxy, bn_batches=a.bn_batches, val_size=a.val_size)
        rows = []
        for spec in specs:
            row = nearest_report(net.space, spec) if a.nearest else {"name": spec.name, "exact": True}
            result = scorer.score(spec, nearest=a.nearest, raise_errors=True)
            row.update(accuracy=result.accuracy, test_accuracy=result.test_accuracy, seconds=result.seconds)
            rows.append(row)
    except (SupernetError, ValueError, OSError, KeyError) as err:
        print(f"error: {' '.join(str(err).split())[:400]}", file=sys.stderr)
        return 2
    for row in rows:
        if a.json:
            print(json.dumps(row))
            continue
        line = f"{row['name']}: validation {100 * row['accuracy']:.2f} %, test {100 * row['test_accuracy']:.2f} % " \
               f"({row['seconds']:.2f} s)"
        if not row.get("exact", True):
            line += (f"; scored as its nearest subnet: MAdds {row['madds_distance_m']:+.1f} M"
                     + (f", pixel1 {row['latency_distance_ms']:+.2f} ms" if "latency_distance_ms" in row else ""))
        print(line)
    return 0


def _info(a) -> int:
    from .model import SupernetError
    from .training import read_meta

    folders = [Path(a.folder)] if a.folder else sorted(p.parent for p in CACHE_ROOT.glob("*/supernet.json"))
    if not folders:
        print(f"no supernet under {CACHE_ROOT}")
        return 0
    for folder in folders:
        try:
            meta = read_meta(folder)
        except SupernetError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        if meta is None:
            print(f"error: {folder}: no supernet.json there", file=sys.stderr)
            return 2
        print(json.dumps({"folder": str(folder), "space": meta.get("space"), "data": meta.get("data"),
                          "key": meta.get("key"), "step": meta.get("step"), "total_steps": meta.get("total_steps"),
                          "finished": meta.get("finished"), "seconds": round(meta.get("seconds", 0), 1),
                          "last_loss": (meta.get("losses") or [[None, None]])[-1][1]}))
    return 0


def main(argv=None) -> int:
    parser = _parser()
    a = parser.parse_args(argv)
    return {"train": lambda: _train(a, parser), "score": lambda: _score(a), "info": lambda: _info(a)}[a.command]()


if __name__ == "__main__":
    sys.exit(main())
