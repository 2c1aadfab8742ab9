"""Issue 19's "done when": ``python -m nas.search --target pixel1 --signal supernet`` resumes after
a kill, both while the supernet trains and while children are scored. The real command, a real
Ray cluster, real training on a tiny data folder; killed with SIGKILL (no handler runs)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from test_supernet import TINY as TINY_SPACE

ROOT = Path(__file__).resolve().parents[1]
CHILDREN = 8
SUPERNET_EPOCHS = 15  # 69 training images at batch 8: 8 steps an epoch, 120 steps, a checkpoint every 25


def _tiny_folder(root: Path) -> Path:
    """96 images of 3 classes (a bright square whose position is the class), one folder per class."""
    from PIL import Image
    from test_netadapt import blob_arrays

    x, y = blob_arrays(96, classes=3, seed=2)
    for i, (image, label) in enumerate(zip(x, y)):
        folder = root / f"class{label}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image[0]).save(folder / f"{i}.png")
    return root


def _wait_for(what: str, ready, proc: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if ready():
            return
        time.sleep(0.02)
    proc.kill()
    proc.wait()
    raise AssertionError(f"{what}: not seen before the run ended or the deadline; its stderr ends "
                         f"{log.read_text()[-2000:]}")


def _meta(cache: Path) -> dict | None:
    """The supernet's checkpoint record (``supernet.json``) in the cache, None before the first checkpoint."""
    metas = list(cache.glob("*/supernet.json"))
    assert len(metas) <= 1, metas  # one space, one data source, one setting: one supernet
    return json.loads(metas[0].read_text()) if metas else None  # written by atomic rename: never torn


def _records(journal: Path) -> list[dict]:
    if not journal.exists():
        return []
    return [json.loads(line) for line in journal.read_text().splitlines(keepends=True) if line.endswith("\n")]


def _workdir(tmp_path: Path) -> Path:
    """The folder the command runs in: its supernet cache (``runs/supernet``, relative to the working
    folder) lands there, not in the checkout. Ray's workers import the children's code from the
    driver's working folder, so the checkout's packages are linked into it (the installed copy of
    the project, if any, may be another checkout)."""
    work = tmp_path / "work"
    work.mkdir()
    for package in sorted(p.parent for p in ROOT.glob("*/__init__.py")):
        (work / package.name).symlink_to(package, target_is_directory=True)
    return work


def _start(cmd: list[str], cwd: Path, log: Path) -> subprocess.Popen:
    with open(log, "w") as err:
        return subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=err, text=True)


def test_a_supernet_search_resumes_after_a_kill_in_training_and_in_scoring(tmp_path, ray_session):
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(dict(TINY_SPACE, reference=None)))
    images = _tiny_folder(tmp_path / "images")
    work = _workdir(tmp_path)
    out, cache = tmp_path / "run", work / "runs" / "supernet"  # the cache: runs/supernet under the working folder
    cmd = [sys.executable, "-m", "nas.search", "--target", "pixel1", "--signal", "supernet",
           "--supernet-epochs", str(SUPERNET_EPOCHS), "--space", str(tmp_path / "tiny.yaml"),
           "--data", f"imagefolder:{images}", "--children", str(CHILDREN), "--strategy", "random",
           "--concurrency", "1", "--retries", "0", "--references", "none", "--out", str(out),
           "--address", ray_session, "--proxy", "batch_size=8", "--proxy", "resolution=16",
           "--proxy", "bn_recalibration_batches=1"]
    journal = out / "journal.jsonl"

    # 1. Killed while the supernet trains, after its first checkpoint.
    proc = _start(cmd, work, tmp_path / "first.log")
    _wait_for("a supernet checkpoint", lambda: (_meta(cache) or {}).get("step", 0) >= 25, proc, tmp_path / "first.log")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    killed = _meta(cache)
    total = killed["total_steps"]
    assert not killed["finished"] and 25 <= killed["step"] < total, killed  # killed mid-training
    assert _records(journal) == []  # no child scored before the supernet is trained

    # 2. Resumed: the supernet continues from its checkpoint; killed again once children are journaled.
    proc = _start(cmd + ["--resume"], work, tmp_path / "second.log")
    _wait_for("2 journaled children", lambda: len(_records(journal)) >= 2, proc, tmp_path / "second.log")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    bar = (tmp_path / "second.log").read_text()
    # its progress bar started at the checkpoint, not at step 0
    assert f"| {killed['step']}/{total} [" in bar and f"| 0/{total} [" not in bar, bar[-2000:]
    trained = _meta(cache)
    assert trained["finished"] and trained["step"] == total
    assert trained["losses"][:len(killed["losses"])] == killed["losses"]  # the record of the steps before the kill kept
    steps = [step for step, _ in trained["losses"]]
    assert steps == sorted(set(steps)) and steps[-1] == total  # every checkpoint once: nothing retrained
    before = _records(journal)
    assert 2 <= len(before) < CHILDREN

    # 3. Resumed again: the journaled children stay as they were, the rest are scored, each once.
    result = subprocess.run(cmd + ["--resume", "--no-progress"], cwd=work, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    done = sum(r.get("trained", True) for r in before)
    assert f"{done} children done" in result.stdout  # the resume picked up the journaled children
    assert json.loads(result.stdout.strip().splitlines()[-1])["children_trained"] == CHILDREN
    after = _records(journal)
    assert after[:len(before)] == before  # nothing journaled was rescored or rewritten
    scored = [r for r in after if r.get("trained", True)]
    assert len(scored) == CHILDREN and len({r["index"] for r in after}) == len(after)
    assert len({r["hash"] for r in scored}) == CHILDREN and all(r["status"] == "ok" for r in scored)
    assert _meta(cache)["saved"] == trained["saved"]  # the finished supernet reused, not trained again
    assert not (ROOT / "runs" / "supernet" / f"tiny-{trained['key']}").exists()  # the checkout stays clean
