"""Block-style YAML a person wrote, and keys to set, rename or remove, in; the same text with only
those keys' lines changed out.

params.yaml and dvc.yaml carry their documentation in comments. Loading and dumping them would
drop every comment (PyYAML) or need a round-trip library as a new dependency (ruamel.yaml), for a
handful of keys. These edits work on the lines: a key is found by its indentation under its
parents, and its block (the key line, the lines indented deeper, and comments continuing it) is
replaced; nothing else is touched. They understand block mappings as these files are written, not
all of YAML, so every caller loads the result and compares it with what it meant to write, and
refuses to write a file whose edit went wrong (`check`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from modelops.errors import ModelopsError


@dataclass(frozen=True)
class _Block:
    start: int  # the key's line
    end: int  # one past its last line
    indent: int


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _is_comment_or_blank(line: str) -> bool:
    return not line.strip() or line.lstrip().startswith("#")


def _block(lines: list[str], start: int) -> _Block:
    """The key at `start` with its value's lines: deeper-indented lines, comments indented deeper
    (a continued comment), and for an empty value the `- ` items of an indentless sequence."""
    indent = _indent(lines[start])
    inline = lines[start].split(":", 1)[1].strip()
    end = start + 1
    for i in range(start + 1, len(lines)):
        line = lines[i]
        if not line.strip():
            continue
        if _indent(line) > indent or (
            not inline and _indent(line) == indent and line.lstrip().startswith("- ")
        ):
            end = i + 1
        elif not line.lstrip().startswith("#"):
            break
    return _Block(start, end, indent)


def _find(lines: list[str], path: Sequence[str]) -> _Block | None:
    lo, hi, indent = 0, len(lines), 0
    found: _Block | None = None
    for depth, key in enumerate(path):
        if depth:  # children sit at the indentation of the block's first content line
            content = [i for i in range(lo, hi) if not _is_comment_or_blank(lines[i])]
            if not content:
                return None
            indent = _indent(lines[content[0]])
        pattern = re.compile(rf"^ {{{indent}}}{re.escape(key)}:(\s|$)")
        at = next((i for i in range(lo, hi) if pattern.match(lines[i])), None)
        if at is None:
            return None
        found = _block(lines, at)
        lo, hi = at + 1, found.end
    return found


def flow(value: Any) -> str:
    """`value` as a one-line YAML value: plain where safe, quoted where YAML would misread it
    ('yes', '1.0', ''), flow style for lists and mappings."""
    if isinstance(value, list | dict):
        text = yaml.safe_dump([value], default_flow_style=True, width=1 << 20, allow_unicode=True)
        return text.strip()[1:-1]
    text = yaml.safe_dump({"k": value}, width=1 << 20, allow_unicode=True)
    return text.strip()[len("k: ") :]


def _comment_column(line: str) -> int | None:
    """Where the line's trailing comment starts, outside quotes; None without one."""
    quote = ""
    for i, ch in enumerate(line):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1] in " \t"):
            return i
    return None


def set_value(text: str, path: Sequence[str], value: Any, comment: str | None = None) -> str:
    """Set the key at `path` to `value` (replacing its whole block, continued comments included),
    with `comment` where the old comment started; a missing key is added at its parent's end."""
    lines = text.splitlines()
    block = _find(lines, path)
    if block is None:
        parent = _find(lines, path[:-1]) if len(path) > 1 else None
        if len(path) > 1 and parent is None:
            return set_value(set_value(text, path[:-1], {}), path, value, comment)
        if parent is not None and lines[parent.start].rstrip().endswith("{}"):
            lines[parent.start] = lines[parent.start].rstrip()[:-2].rstrip()
        at = len(lines) if parent is None else parent.end
        indent = 0 if parent is None else parent.indent + 2
        children = [] if parent is None else lines[parent.start + 1 : parent.end]
        content = [c for c in children if not _is_comment_or_blank(c)]
        if content:
            indent = _indent(content[0])
        if parent is None and lines and lines[-1].strip():
            lines.append("")  # a new section, set apart like the others
            at += 1
        lines.insert(at, " " * indent + path[-1] + ":")
        block = _Block(at, at + 1, indent)
    line = f"{' ' * block.indent}{path[-1]}: {flow(value)}"
    if comment:
        # where the old comment started, else where the comment of a key above it does
        column = next(
            (c for i in range(block.start, -1, -1) if (c := _comment_column(lines[i]))), 0
        )
        line += " " * (column - len(line) if column > len(line) + 1 else 2) + "# " + comment
    lines[block.start : block.end] = [line]
    return "\n".join(lines) + "\n"


def remove(text: str, path: Sequence[str]) -> str:
    """Remove the key at `path` with its block; text without it is returned unchanged."""
    lines = text.splitlines()
    block = _find(lines, path)
    if block is None:
        return text
    end = block.end
    while end < len(lines) and not lines[end].strip():  # and the blank lines that set it apart
        end += 1
    del lines[block.start : end]
    return "\n".join(lines) + "\n"


def comment_out(text: str, path: Sequence[str], note: str) -> str:
    """The key at `path` with its block turned into comments under a `# note` line: kept for a
    person to put back, gone for every YAML reader."""
    lines = text.splitlines()
    block = _find(lines, path)
    if block is None:
        return text
    pad = " " * block.indent
    kept = [
        f"{pad}# {line[block.indent :]}" if line.strip() else line
        for line in lines[block.start : block.end]
    ]
    lines[block.start : block.end] = [f"{pad}# {note}", *kept]
    return "\n".join(lines) + "\n"


def rename(text: str, path: Sequence[str], new_key: str) -> str:
    """Give the key at `path` the name `new_key`, keeping its value and comments."""
    lines = text.splitlines()
    block = _find(lines, path)
    if block is None:
        return text
    old = lines[block.start]
    lines[block.start] = " " * block.indent + new_key + old[block.indent + len(path[-1]) :]
    return "\n".join(lines) + "\n"


def check(
    source: str, text: str, load: Callable[[str], Any], expected: Any, keys: Sequence[str]
) -> None:
    """Refuse an edit whose result does not load to `expected`, naming the keys to set by hand."""
    try:
        got = load(text)
    except (ModelopsError, yaml.YAMLError) as exc:
        got = exc
    if got != expected:
        raise ModelopsError(
            f"{source}: could not change {', '.join(keys)} without disturbing the rest of the "
            "file (its layout is not one this tool edits); nothing was written. Set them by "
            "hand, then run the command again."
        )
