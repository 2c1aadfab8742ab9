"""A bad --data folder is one line before any work (issue 21: it passed --dry-run, then every child
failed with ~50 lines of Ray traceback). Real folders, real subprocesses."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from data_folders import tinyimagenet

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, cwd=ROOT, timeout=120)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return tinyimagenet(tmp_path_factory.mktemp("tin") / "tiny-imagenet-200", classes=3, train=6, val=2)


def _bad_sources(tiny: Path, tmp: Path) -> dict[str, str]:
    empty = tmp / "empty"
    (empty / "a").mkdir(parents=True)
    return {
        "no images": (f"imagefolder:{empty}", "no images"),
        "subset too large": (f"tinyimagenet:{tiny}?classes=50", "classes=50"),
        "per class too large": (f"tinyimagenet:{tiny}?per_class=500", "per_class"),
        "partial layout": (f"imagenet:{tiny}", "has no"),
    }


@pytest.mark.parametrize("command", [["nas.search", "--target", "pixel1"],
                                     ["netadapt.run", "mobilenet_v3_small", "--target", "pixel1", "--budget-ratio", "0.9"]])
def test_a_bad_data_folder_is_one_line_before_any_work(command, tiny, tmp_path):
    for name, (source, words) in _bad_sources(tiny, tmp_path).items():
        result = _run(*command, "--data", source, "--dry-run", "--out", str(tmp_path / "out"))
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert result.returncode == 2, (name, result.stderr[-500:])
        assert len(lines) == 1 and lines[0].startswith("error: argument --data: ") and words in lines[0], (name, lines)
        assert not (tmp_path / "out").exists()


def test_a_good_subset_passes_the_dry_run_and_is_named(tiny, tmp_path):
    result = _run("nas.search", "--target", "pixel1", "--data", f"tinyimagenet:{tiny}?classes=2,per_class=4,val_per_class=2",
                  "--dry-run", "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr[-500:]
    assert "classes 2, per_class 4" in result.stdout
