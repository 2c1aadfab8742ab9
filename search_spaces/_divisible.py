"""The one channel-rounding rule used everywhere (specs, op keys, NetAdapt)."""

from __future__ import annotations


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None, round_limit: float = 0.9) -> int:
    """Round ``value`` to the nearest multiple of ``divisor``, never below ``min_value``.

    This is the rule of the official MobileNet models (TF-slim ``_make_divisible``, torchvision,
    timm): round to the nearest multiple, at least ``divisor``, and add one more ``divisor``
    when rounding lost more than ``1 - round_limit`` (10 %) of the value.
    """
    min_value = divisor if min_value is None else min_value
    new_value = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new_value < round_limit * value:
        new_value += divisor
    return int(new_value)
