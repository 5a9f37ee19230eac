"""The project's exception tree; every failure a user can cause is one of these.

    ModelopsError                    base: carries a message a person can act on
    ├── ParamsError                  params.yaml is missing, malformed, or has an unknown/out-of-range key
    ├── DataValidationError          data does not satisfy the feature schema (lists every problem)
    ├── SchemaError                  a feature declaration or stored schema is inconsistent
    ├── ArtifactIntegrityError       a file's hash differs from the one recorded for it
    └── RegistryError                a registry operation cannot be done (unknown version, dirty tree, ...)

Stages and the CLI print the message and exit non-zero; the server maps each type to a status
code in one handler table. Nothing catches these to carry on as if all were well.
"""

from __future__ import annotations

from dataclasses import dataclass


class ModelopsError(Exception):
    """Base of every error this project raises on purpose."""


class ParamsError(ModelopsError):
    """params.yaml cannot be loaded into the typed parameters."""


class SchemaError(ModelopsError):
    """A feature declaration, or a schema stored in a card, is inconsistent."""


WHOLE_TABLE = "*"  # DataIssue.column for a problem of the file or table, not of one column


@dataclass(frozen=True)
class DataIssue:
    """One problem found in a data frame: which column, what kind, how many rows, a few of them."""

    column: str
    kind: str
    count: int
    rows: tuple[int, ...] = ()
    detail: str = ""

    def __str__(self) -> str:
        where = "" if self.column == WHOLE_TABLE else f"column '{self.column}': "
        text = f"{where}{self.count} {self.kind}" if self.count else f"{where}{self.kind}"
        if self.detail:
            text += f" {self.detail}"
        if self.rows:
            shown = ", ".join(str(r) for r in self.rows[:5])
            more = ", …" if self.count > len(self.rows[:5]) else ""
            text += f" (rows {shown}{more})"
        return text


class DataValidationError(ModelopsError):
    """Data failed validation; `issues` lists every problem found, not just the first.

    Row numbers count data rows from 1, header excluded.
    """

    def __init__(self, source: str, issues: list[DataIssue]) -> None:
        self.source = source
        self.issues = issues
        lines = "\n".join(f"  - {issue}" for issue in issues)
        super().__init__(f"{source}: {len(issues)} problem(s) found\n{lines}")


class ArtifactIntegrityError(ModelopsError):
    """A file's content hash does not match the hash recorded for it."""


class RegistryError(ModelopsError):
    """A registry operation cannot be carried out as asked."""
