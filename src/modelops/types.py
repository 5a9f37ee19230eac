"""The array and row aliases the library, the stages and the server share; declared once."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
IndexArray = npt.NDArray[np.intp]
# One instance's feature values in schema order, None for missing: what a JSON request decodes to.
Row = tuple[Any, ...]
