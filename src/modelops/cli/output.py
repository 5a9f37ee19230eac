"""What the commands print: JSON for machines, aligned tables for people."""

from __future__ import annotations

from collections.abc import Sequence

import msgspec


def print_json(obj: object) -> None:
    print(msgspec.json.format(msgspec.json.encode(obj)).decode())


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], indent: str = "") -> str:
    """Columns padded to their widest cell; None shows as '-', floats to 6 significant digits."""
    cells = [[cell(c) for c in row] for row in [headers, *rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    return "\n".join(
        indent + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
        for r in cells
    )


def cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list | dict):
        return msgspec.json.encode(value).decode()
    return str(value)
