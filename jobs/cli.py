"""Helpers the command-line modules share (``python -m nas.search``, ``python -m netadapt.run``)."""

from __future__ import annotations

import argparse

import yaml


def parse_overrides(items: list[str], parser: argparse.ArgumentParser, example: str, flag: str = "--proxy") -> dict:
    """``--proxy KEY=VALUE`` flags as a dict, each value read as YAML (``0.05`` a float, ``null``
    None); a flag without ``=`` is a usage error that shows ``example``."""
    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"{flag} {item!r}: write KEY=VALUE, e.g. {flag} {example}")
        overrides[key.strip()] = yaml.safe_load(value)
    return overrides
