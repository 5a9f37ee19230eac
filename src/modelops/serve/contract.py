"""The card's feature schema in; the request/response Structs and the request decoder out. No feature
is spelled here: every field comes from the schema at startup. These Structs are also what the
OpenAPI document describes (serve/openapi.py), so the document and the validation cannot disagree.

An instance is an object with exactly the schema's features: numbers within the schema's limits
(whole numbers for integer features), categories as text (only the known ones where the feature is
strict), null only where the feature is nullable. Beside them it may carry an `"id"` (text, 1 to 256
characters): the instance's own identifier, which the prediction log keeps so that an outcome
reported later (`POST /v1/feedback`) can be joined back to this answer. The id is never a feature and
never reaches the model; a schema with a feature named `id` takes no instance ids. A feedback request
carries outcomes, each with one of the model's classes as its label. A bad request becomes a
DataValidationError that lists every problem by JSON path and never repeats the value that was sent.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Annotated, Any, Literal, NamedTuple

import msgspec

from modelops.card import Provenance
from modelops.drift.report import DriftReport
from modelops.errors import DataIssue, DataValidationError
from modelops.evaluation import Decision
from modelops.logline import InstanceId, Outcome
from modelops.schema import CategoricalFeature, FeatureSchema, NumericFeature
from modelops.types import Row

SOURCE = "request body"
MAX_CATEGORY_CHARS = 200  # a category is a label, not a document; bounds logs and memory
MAX_ISSUES = 50  # a request with thousands of bad rows gets the first fifty problems
MAX_KEY_CHARS = 64  # unknown keys are named in paths, shortened
ID = "id"  # an instance's identifier beside its features, when no feature has that name
# A number the schema leaves unbounded must still be below 2**53 in magnitude: every integer up to
# there is exact in float64, so "exclusive of 2**53" means the same to a JSON Schema validator and
# to the decoder (a bound like 1.8e308 is not: the integer just past it rounds onto it).
UNBOUNDED = float(2**53)


# --------------------------------------------------------------------------- fixed Structs


class ModelRef(msgspec.Struct, frozen=True):
    name: str
    version: str
    sha256: str


class FieldError(msgspec.Struct, frozen=True):
    field: str  # JSON path into the request, `$` for the request as a whole
    message: str


class ErrorResponse(msgspec.Struct, frozen=True):
    status: int
    errors: list[FieldError]
    request_id: str


class DriftSnapshot(msgspec.Struct, frozen=True):
    """`GET /v1/drift`: the live window (capacity `window` rows) judged like the drift stage."""

    window: int
    report: DriftReport


class Health(msgspec.Struct, frozen=True):
    status: Literal["live", "ready", "loading", "failed", "unavailable"]
    reason: str | None = None


class Inference(msgspec.Struct, frozen=True):
    path: Literal["fastpath", "pipeline"]
    detail: str


class ModelDescription(Provenance, frozen=True):
    """GET /v1/model: which model answers, where it came from, and how well it scored."""

    version: str
    commit: str
    stages: list[str]
    metrics: dict[str, Any]
    decision: Decision
    ready: bool
    inference: Inference | None = None


# --------------------------------------------------------------------------- built from the schema


class Decoded(NamedTuple):
    """A valid predict request: its instances (Structs that encode to the instances' features, as
    the prediction log writes them), their rows in schema order (None for missing), and their ids
    (None when the request gave none, or an id per instance, None for one without)."""

    instances: list[msgspec.Struct]
    rows: list[Row]
    ids: list[str | None] | None = None


class FeedbackReceipt(msgspec.Struct, frozen=True):
    """`POST /v1/feedback`'s answer: the outcomes are in the feedback log."""

    accepted: int
    request_id: str


class Contract:
    """The request contract of one feature schema, and the decoder that enforces it."""

    def __init__(self, schema: FeatureSchema, max_instances: int) -> None:
        self.schema = schema
        self.names = schema.names
        self.max_instances = max_instances
        self._field_types = {f.name: _field_type(f) for f in schema.features}
        self.takes_ids = ID not in self._field_types
        self.instance_type = _instance_type(self._field_types, self.takes_ids)
        self.request_type = _list_of(
            "PredictRequest", "instances", self.instance_type, max_instances, "instances to score"
        )
        self._decoder = msgspec.json.Decoder(self.request_type)
        classes = schema.target.classes
        self.probabilities_type, self.prediction_type, self.response_type = _answer_types(classes)
        self._astuple = msgspec.structs.astuple
        self.feedback_type, self._label_type = _feedback_types(classes, max_instances)
        self._feedback_decoder = msgspec.json.Decoder(self.feedback_type)
        # Lenient categorical features: their position and known categories, to count unseen ones.
        self._lenient = [
            (i, f.name, frozenset(f.categories))
            for i, f in enumerate(schema.features)
            if isinstance(f, CategoricalFeature) and not f.strict
        ]

    def field_type(self, name: str) -> Any:
        """The type a feature's value is decoded to: its limits, categories and nullability."""
        return self._field_types[name]

    def decode(self, body: bytes) -> Decoded:
        """The instances (Structs that encode back to the same JSON objects) and their rows in
        schema order (None for missing); or DataValidationError listing every problem."""
        try:
            request = self._decoder.decode(body)
        except msgspec.ValidationError as exc:
            raise DataValidationError(SOURCE, self._explain(body, exc)) from None
        except msgspec.DecodeError as exc:
            raise DataValidationError(SOURCE, [DataIssue("$", malformed(body, exc), 0)]) from None
        except UnicodeDecodeError:
            raise DataValidationError(SOURCE, [DataIssue("$", "not valid UTF-8", 0)]) from None
        except RecursionError:
            raise DataValidationError(SOURCE, [DataIssue("$", "nested too deeply", 0)]) from None
        instances: list[msgspec.Struct] = request.instances  # type: ignore[attr-defined]
        astuple = self._astuple
        if not self.takes_ids:
            return Decoded(instances, [astuple(instance) for instance in instances])
        values = [astuple(instance) for instance in instances]
        rows = [v[:-1] for v in values]
        ids = [v[-1] for v in values]
        if not any(i is not None for i in ids):
            return Decoded(instances, rows)
        # The log's `inputs` are the features alone: the ids go into the lines' own field.
        make = self.instance_type
        return Decoded([make(*row) for row in rows], rows, ids)

    def decode_feedback(self, body: bytes) -> list[Outcome]:
        """The outcomes of a feedback request, each label one of the model's classes; or
        DataValidationError listing every problem."""
        try:
            request = self._feedback_decoder.decode(body)
        except msgspec.ValidationError as exc:
            raise DataValidationError(SOURCE, self._explain_feedback(body, exc)) from None
        except msgspec.DecodeError as exc:
            raise DataValidationError(SOURCE, [DataIssue("$", malformed(body, exc), 0)]) from None
        except (UnicodeDecodeError, RecursionError):
            raise DataValidationError(SOURCE, [DataIssue("$", "not valid JSON text", 0)]) from None
        outcomes: list[Outcome] = request.outcomes  # type: ignore[attr-defined]
        return outcomes

    def predictions(
        self, labels: Sequence[Any], proba: Sequence[Sequence[float]]
    ) -> list[msgspec.Struct]:
        """One answer per row: its label and its probability of each class, in class order."""
        prediction, probabilities = self.prediction_type, self.probabilities_type
        return [
            prediction(label, probabilities(*p)) for label, p in zip(labels, proba, strict=True)
        ]

    def unseen_categories(self, rows: Sequence[Row]) -> dict[str, int]:
        """Per lenient categorical feature, how many rows carry a category training never saw."""
        counts: dict[str, int] = {}
        for i, name, known in self._lenient:
            n = sum(1 for r in rows if r[i] is not None and r[i] not in known)
            if n:
                counts[name] = n
        return counts

    # ----------------------------------------------------------------------- error reports

    def _explain(self, body: bytes, first: msgspec.ValidationError) -> list[DataIssue]:
        """Every problem in the request, not just the first one msgspec stops at.

        The typed decoder failed; decode the JSON untyped and check each instance's fields one by
        one. Should that find nothing (the two disagree on some corner), report the decoder's error.
        """
        optional = {ID: _ID_TYPE} if self.takes_ids else {}
        return self._explain_items(body, first, "instances", self._field_types, optional)

    def _explain_feedback(self, body: bytes, first: msgspec.ValidationError) -> list[DataIssue]:
        fields = {f.encode_name: f.type for f in msgspec.structs.fields(Outcome)}
        classes = ", ".join(json_text(c) for c in self.schema.target.classes)
        return self._explain_items(
            body,
            first,
            "outcomes",
            fields | {"label": self._label_type},
            messages={
                "label": f"not one of the model's classes ({classes})",
                "observed_at": "not an ISO-8601 time with a timezone (e.g. 2026-11-01T09:30:00Z)",
            },
        )

    def _explain_items(
        self,
        body: bytes,
        first: msgspec.ValidationError,
        key: str,
        required: dict[str, Any],
        optional: dict[str, Any] | None = None,
        messages: dict[str, str] | None = None,
    ) -> list[DataIssue]:
        """Every problem in a request of one list of objects, `key`, not just the first one
        msgspec stops at: the typed decoder failed, so decode the JSON untyped and check each
        object's fields one by one. Should that find nothing (the two disagree on some corner),
        report the decoder's error. `messages` replaces what msgspec says of a field's bad value."""
        issues: list[DataIssue] = []
        try:
            raw = msgspec.json.decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError, RecursionError):
            raw = None  # the decoder's own message will have to do
        if isinstance(raw, dict):
            issues += [DataIssue(_path("$", k), "unknown field", 0) for k in raw if k != key]
            items, where = raw.get(key), f"$.{key}"
            if key not in raw:
                issues.append(DataIssue(where, "required field missing", 0))
            elif not isinstance(items, list):
                issues.append(DataIssue(where, _expected("array", items), 0))
            elif not 1 <= len(items) <= self.max_instances:
                text = f"has {len(items)} {key}; send 1 to {self.max_instances}"
                issues.append(DataIssue(where, text, 0))
            else:
                fields = required | (optional or {})
                for i, item in enumerate(items):
                    _explain_object(f"{where}[{i}]", item, fields, set(required), issues, messages)
                    if len(issues) >= MAX_ISSUES:
                        break
        if not issues:
            issues.append(_issue_from(first))
        return issues[:MAX_ISSUES]


_ID_TYPE = InstanceId | None


def _explain_object(
    where: str,
    item: Any,
    fields: dict[str, Any],
    required: set[str],
    issues: list[DataIssue],
    messages: dict[str, str] | None = None,
) -> None:
    """Each problem of one object of a request: not an object, unknown and missing fields, and
    every value its field's type refuses."""
    if not isinstance(item, dict):
        issues.append(DataIssue(where, _expected("object", item), 0))
        return
    issues += [
        DataIssue(_path(where, key), "unknown field", 0) for key in item if key not in fields
    ]
    for name, typ in fields.items():
        path = _path(where, name)
        if name not in item:
            if name in required:
                issues.append(DataIssue(path, "required field missing", 0))
            continue
        try:
            msgspec.convert(item[name], typ)
        except msgspec.ValidationError as exc:
            message = (messages or {}).get(name) or plain(str(exc))
            issues.append(DataIssue(path, message, 0))


def _instance_type(field_types: dict[str, Any], takes_ids: bool) -> type[msgspec.Struct]:
    """An instance: the features as `field_types` has them, then the optional instance id.

    Struct attributes are f0, f1, ...; `rename` gives them the features' names on the wire, so any
    feature name works, even one that is not a Python identifier. The id comes last, optional, and
    is left out when the instance is encoded without one."""
    names = list(field_types)
    ids: list[Any] = [("instance_id", _ID_TYPE, None)] if takes_ids else []
    return msgspec.defstruct(
        "Instance",
        [(f"f{i}", field_types[name]) for i, name in enumerate(names)] + ids,
        rename={f"f{i}": name for i, name in enumerate(names)} | {"instance_id": ID},
        forbid_unknown_fields=True,
        frozen=True,
        omit_defaults=True,
        gc=False,  # scalar fields only: no cycles, nothing for the collector to track
    )


def _list_of(
    name: str, key: str, item: type[msgspec.Struct], most: int, what: str
) -> type[msgspec.Struct]:
    """A request body of one field, `key`: 1 to `most` items."""
    items: Any = Annotated[
        list[item],  # type: ignore[valid-type]
        msgspec.Meta(min_length=1, max_length=most, description=f"1 to {most} {what}"),
    ]
    return msgspec.defstruct(name, [(key, items)], forbid_unknown_fields=True, frozen=True)


def _answer_types(
    classes: Sequence[Any],
) -> tuple[type[msgspec.Struct], type[msgspec.Struct], type[msgspec.Struct]]:
    """The answer's Structs, built from the target as the request's are from the features: one
    probability field per class (on the wire, the class as a string), the label one of the
    classes, and the response around them. Structs, not dicts: a 1000-row answer is built in a
    third of the time."""
    probabilities = msgspec.defstruct(
        "Probabilities",
        [(f"p{i}", float) for i in range(len(classes))],
        rename={f"p{i}": str(c) for i, c in enumerate(classes)},
        frozen=True,
        gc=False,
    )
    prediction = msgspec.defstruct(
        "Prediction",
        [("label", Literal[tuple(classes)]), ("probabilities", probabilities)],
        frozen=True,
        gc=False,
    )
    response = msgspec.defstruct(
        "PredictResponse",
        [("model", ModelRef), ("predictions", list[prediction]), ("request_id", str)],  # type: ignore[valid-type]
        frozen=True,
    )
    return probabilities, prediction, response


def _feedback_types(classes: Sequence[Any], most: int) -> tuple[type[msgspec.Struct], Any]:
    """The feedback request of a model's classes, and the type of its outcomes' labels."""
    shown = ", ".join(json_text(c) for c in classes)
    label: Any = Annotated[Literal[tuple(classes)], msgspec.Meta(description=f"a class: {shown}")]
    # An Outcome whose label can only be one of the classes (the OpenAPI document lists them).
    outcome = msgspec.defstruct("Outcome", [("label", label)], bases=(Outcome,))
    what = "outcomes of answered instances, by their id"
    return _list_of("FeedbackRequest", "outcomes", outcome, most, what), label


def json_text(value: Any) -> str:
    return msgspec.json.encode(value).decode()


def _field_type(f: NumericFeature | CategoricalFeature) -> Any:
    missing = "null when missing" if f.nullable else "never null"
    if isinstance(f, NumericFeature):
        # Integer features take whole numbers written either way (49 or 49.0): a client's float
        # column with gaps sends 49.0, and it means 49.
        kind = "whole number" if f.dtype == "integer" else "number"
        limits: dict[str, float] = {
            **({"ge": f.min} if f.min is not None else {"gt": -UNBOUNDED}),
            **({"le": f.max} if f.max is not None else {"lt": UNBOUNDED}),
            **({"multiple_of": 1} if f.dtype == "integer" else {}),
        }
        meta = msgspec.Meta(**limits, description=f"{kind}; {missing}")  # type: ignore[call-overload]
        typ: Any = Annotated[float, meta]
    elif f.strict:
        typ = Annotated[
            Literal[tuple(f.categories)],
            msgspec.Meta(description=f"one of the known categories; {missing}"),
        ]
    else:
        shown = ", ".join(f.categories[:10]) + (", …" if len(f.categories) > 10 else "")
        typ = Annotated[
            str,
            msgspec.Meta(
                max_length=MAX_CATEGORY_CHARS,
                description=f"category (known: {shown}; others are accepted and counted); {missing}",
            ),
        ]
    return typ | None if f.nullable else typ


# A high-surrogate escape not followed by a low one; msgspec reports it as "Input data was
# truncated" when a quote follows it, which sends a client looking for the wrong problem.
_LONE_SURROGATE = re.compile(rb"\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F][0-9a-fA-F]{2})")


def malformed(body: bytes, exc: msgspec.DecodeError) -> str:
    if _LONE_SURROGATE.search(body):
        return (
            "not valid JSON: a \\uD800-\\uDBFF escape must be followed by a low surrogate "
            "(\\uDC00-\\uDFFF); a lone surrogate is not text"
        )
    return f"not valid JSON: {exc}"


_AT = re.compile(r" - at `(?P<path>[^`]*)`$")
_UNKNOWN = re.compile(r"^Object contains unknown field `(?P<key>.*)`$", re.S)
_MISSING = re.compile(r"^Object missing required field `(?P<key>.*)`$", re.S)


def _issue_from(exc: msgspec.ValidationError) -> DataIssue:
    text = str(exc)
    match = _AT.search(text)
    path = match.group("path") if match else "$"
    message = text[: match.start()] if match else text
    if m := _UNKNOWN.match(message):
        return DataIssue(_path(path, m.group("key")), "unknown field", 0)
    if m := _MISSING.match(message):
        return DataIssue(_path(path, m.group("key")), "required field missing", 0)
    return DataIssue(path, plain(message), 0)


def plain(message: str) -> str:
    """msgspec's message without the path, and without the offending value where it quotes one."""
    message = _AT.sub("", message)
    if message.startswith("Invalid enum value"):
        return "not one of the known categories of this strict feature"
    if "multiple of 1.0" in message:
        return "Expected a whole number"
    # JSON has numbers, not floats.
    return message.replace("`float", "`number").replace("| float", "| number")


def _path(where: str, key: str) -> str:
    shown = key if len(key) <= MAX_KEY_CHARS else key[:MAX_KEY_CHARS] + "…"
    return f"{where}.{shown}"


def _expected(kind: str, value: Any) -> str:
    got = {dict: "object", list: "array", str: "str", bool: "bool", int: "int", float: "float"}
    return f"Expected `{kind}`, got `{got.get(type(value), 'null')}`"
