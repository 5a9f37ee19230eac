"""The array and row aliases shared by the library, the stages and the server."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
Row = tuple[Any, ...]  # one row's feature values in schema order
