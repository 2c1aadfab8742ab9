"""The search and NetAdapt read the accuracy signal of proxytask.profiles, and select on validation."""

import pytest

from nas.runner import SearchConfig, SearchError, search_signal
from proxytask.profiles import PROFILES, signal


def test_the_search_uses_the_cpu_profile_by_default():
    sig = search_signal(SearchConfig())
    expected = signal("cpu").proxy
    assert sig.profile == "cpu" and sig.proxy.device == "cpu"
    assert sig.proxy.resolution == expected.resolution == PROFILES["cpu"]["proxy"]["resolution"]
    assert sig.proxy.epochs == expected.epochs and sig.proxy.threads == 1


def test_gpus_per_trial_selects_the_gpu_profile():
    sig = search_signal(SearchConfig(gpus_per_trial=0.25))
    assert sig.profile == "gpu" and sig.proxy.device == "cuda" and sig.proxy.amp == "bf16"
    assert sig.proxy.resolution == PROFILES["gpu"]["proxy"]["resolution"]
    # the gpu profile's schedule on a CPU-only run (e.g. to compare) trains on the CPU
    cpu = search_signal(SearchConfig(profile="gpu"))
    assert cpu.proxy.device == "cpu" and cpu.proxy.epochs == PROFILES["gpu"]["proxy"]["epochs"]


def test_flags_override_the_profile():
    sig = search_signal(SearchConfig(epochs=0.5, proxy_resolution=48, proxy_overrides={"lr": 0.05}, seed=3))
    assert (sig.proxy.epochs, sig.proxy.resolution, sig.proxy.lr, sig.proxy.seed) == (0.5, 48, 0.05, 3)
    with pytest.raises(SearchError, match="ProxyConfig.bogus: unknown field"):
        search_signal(SearchConfig(proxy_overrides={"bogus": 1}))
    with pytest.raises(SearchError, match="needs GPUs for the trials"):
        search_signal(SearchConfig(proxy_overrides={"device": "cuda"}))


def test_netadapt_reads_the_same_signal(tmp_path):
    from netadapt.algorithm import _Run
    from netadapt.config import NetAdaptConfig
    from search_spaces import reference

    spec = reference("mobilenet_v3_small", 0.35, 224)
    config = NetAdaptConfig(spec=spec, target="pixel1", budget_ratio=0.9, out=str(tmp_path / "na"), val_size=64)
    run = _Run(config, spec, log=lambda message: None)
    run.setup_training()
    assert run.proxy.resolution == PROFILES["cpu"]["proxy"]["resolution"] == run.data.resolution
    assert run.data.test_y is not None and len(run.data.val_y) == 64
