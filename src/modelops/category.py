"""A categorical value in; its category name out: the one rule every part applies (the schema's
inference and checks, the profile, the drift readers and the live window). numpy only, so the
drift command does not load pandas to name a category."""

from __future__ import annotations

from typing import Any

import numpy as np


def category_name(value: Any) -> str:
    """A categorical value as its category name. Integral floats print as integers, so a code column
    read from CSV with gaps (1.0, NaN) means the same categories as the same column without gaps (1).
    """
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value)
