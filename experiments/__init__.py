"""Experiments: command-line runs over the library (benchmarks, searches, figures)."""
