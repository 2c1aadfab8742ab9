"""Benchmarks: each prints its figures and records them under ``results/`` with its command.

``proxy_fidelity`` (rank agreement of the accuracy signal with published ImageNet top-1),
``proxy_discrimination``, ``bench_netadapt``, ``bench_strategies``, ``bench_ray``,
``bench_gpu_signal``, ``bench_gpu_proxy``. Each runs as ``python -m experiments.NAME``.
"""
