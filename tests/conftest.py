"""Shared fixtures: one real Ray instance for the whole session."""

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tests/strategies.py and friends


@pytest.fixture(scope="session", autouse=True)
def data_cache(tmp_path_factory):
    """Decoded-image caches (proxytask.cache) go to a temporary folder, never ~/.cache."""
    previous = os.environ.get("MNV3_CACHE")
    os.environ["MNV3_CACHE"] = str(tmp_path_factory.mktemp("mnv3-cache"))
    yield Path(os.environ["MNV3_CACHE"])
    if previous is None:
        os.environ.pop("MNV3_CACHE", None)
    else:
        os.environ["MNV3_CACHE"] = previous


@pytest.fixture(scope="session")
def ray_session():
    import ray

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()
