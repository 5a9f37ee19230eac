"""One module per DVC stage; each runs as `python -m modelops.stages.<name>`."""

from __future__ import annotations

import sys
from collections.abc import Callable

from modelops.errors import ModelopsError


def run(main: Callable[[], None]) -> None:
    """Run a stage's main(); a ModelopsError becomes its message on stderr and exit status 1."""
    try:
        main()
    except ModelopsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
