"""modelops: a tabular scikit-learn model from notebook to production, kept honest there."""

from __future__ import annotations

__version__ = "0.1.0"
