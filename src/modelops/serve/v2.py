"""The primary's contract in; the Open Inference Protocol (KServe / Triton "V2", REST) over it out:
the request and response Structs, the decoder that turns input tensors into the rows /v1 takes,
and the answers as output tensors.

A request carries one input tensor per feature, each of shape [n] with its n values in `data`:
FP64 or FP32 (INT64 or INT32 too) for a numeric feature, BYTES (text) for a categorical one. Every
value is checked by the very type /v1 checks it with (`Contract.field_type`: limits, whole numbers,
known categories); a missing value is `null`, where the feature is nullable. The answer has two
output tensors: `probabilities` (FP64, shape [n, k], row-major, the classes in the order the
output's `classes` parameter and the model metadata list) and `label` (INT64 for integer classes,
BYTES otherwise). Tensors travel as JSON; the binary tensor extension is refused with a message
saying so. Errors are `{"error": "..."}`, naming the input and the element.

Instance ids (what /v1 takes as an instance's `"id"`) travel as one more, optional input tensor
named `id`: BYTES, shape [n], one text per instance (null for an instance without one). It is
logged and never reaches the model; the model metadata names it in its parameters
(`instance_id_input`). The request's own `id` is the protocol's request id, as before.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Annotated, Any, Literal, NamedTuple, Union, get_args

import msgspec

from modelops.errors import DataIssue, DataValidationError
from modelops.logline import InstanceId
from modelops.schema import NumericFeature
from modelops.serve.contract import (
    ID,
    MAX_ISSUES,
    MAX_KEY_CHARS,
    Contract,
    Decoded,
    malformed,
    plain,
)

NUMERIC = ("FP64", "FP32", "INT64", "INT32")
WHOLE = ("INT64", "INT32")
OUTPUTS = ("probabilities", "label")
PLATFORM = "modelops_sklearn"
BINARY = (
    "binary tensor data is not supported; send every tensor's values as a JSON array in `data` "
    "(tritonclient: binary_data=False)"
)
Parameter = bool | int | float | str
Parameters = dict[str, Parameter]
_TOP = ("inputs", "id", "parameters", "outputs")
_TENSOR = ("name", "shape", "datatype", "data", "parameters")


class TensorInvalid(DataValidationError):
    """A V2 request breaks the contract; each issue's `kind` is a whole sentence naming the input
    (and the element) it is about, as the protocol's one-string error carries it."""

    def text(self) -> str:
        return "; ".join(issue.kind for issue in self.issues)


# --------------------------------------------------------------------------- fixed Structs


class V2Error(msgspec.Struct, frozen=True):
    error: str


class ServerLive(msgspec.Struct, frozen=True):
    live: bool


class ServerReady(msgspec.Struct, frozen=True):
    ready: bool


class ModelReady(msgspec.Struct, frozen=True):
    name: str
    ready: bool


class ServerMetadata(msgspec.Struct, frozen=True):
    name: str
    version: str
    extensions: list[str]


class TensorMetadata(msgspec.Struct, frozen=True, omit_defaults=True):
    name: str
    datatype: str
    shape: list[int]
    parameters: Parameters | None = None


class ModelMetadata(msgspec.Struct, frozen=True):
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]
    parameters: Parameters


class RequestedOutput(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: Literal["probabilities", "label"]
    parameters: Parameters | None = None


class OutputTensor(msgspec.Struct, frozen=True, omit_defaults=True):
    name: str
    datatype: str
    shape: list[int]
    data: list[float | int | str]
    parameters: Parameters | None = None


class InferResponse(msgspec.Struct, frozen=True):
    model_name: str
    model_version: str
    id: str
    outputs: list[OutputTensor]


class ValidInfer(NamedTuple):
    """A valid infer request: its rows as /v1 decodes them, its id, the outputs it asked for."""

    decoded: Decoded
    id: str | None
    outputs: list[str]


# --------------------------------------------------------------------------- built from the contract


class Protocol:
    """The V2 request type of one contract, its decoder, and the answers' tensors."""

    def __init__(self, contract: Contract, name: str, classes: Sequence[Any]) -> None:
        self.contract = contract
        self.name = name
        self.features = contract.schema.features
        self.names = list(contract.names)
        self.classes = list(classes)
        self.label_type = (
            "INT64"
            if all(isinstance(c, int) and not isinstance(c, bool) for c in classes)
            else "BYTES"
        )
        self.class_order = json.dumps([str(c) for c in classes])
        self._datatypes: dict[str, Any] = {
            f.name: Literal[NUMERIC] if isinstance(f, NumericFeature) else Literal["BYTES"]
            for f in self.features
        }
        tensors = [self._tensor_type(i, f.name) for i, f in enumerate(self.features)]
        if contract.takes_ids:
            self._datatypes[ID] = Literal["BYTES"]
            tensors.append(self._tensor_type(len(tensors), ID, InstanceId | None))
        tensor: Any = Union[tuple(tensors)] if len(tensors) > 1 else tensors[0]  # noqa: UP007
        self.request_type: type[msgspec.Struct] = msgspec.defstruct(
            "InferRequest",
            [
                (
                    "inputs",
                    Annotated[
                        list[tensor],
                        msgspec.Meta(
                            min_length=1,
                            max_length=len(tensors),
                            description="one tensor per feature, each of shape [n]",
                        ),
                    ],
                ),
                ("id", str | None, None),
                ("parameters", Parameters | None, None),
                ("outputs", list[RequestedOutput] | None, None),
            ],
            forbid_unknown_fields=True,
            frozen=True,
        )
        self._decoder = msgspec.json.Decoder(self.request_type)

    def _tensor_type(self, i: int, name: str, value: Any = None) -> type[msgspec.Struct]:
        """The input tensor of one feature: tagged by its name, its values of the type /v1 decodes
        the feature's values to (or of `value`: the instance ids' tensor)."""
        most = self.contract.max_instances
        count = Annotated[int, msgspec.Meta(ge=1, le=most)]
        shape: Any = Annotated[
            list[count],
            msgspec.Meta(min_length=1, max_length=1, description="[n]: one value per instance"),
        ]
        value = value or self.contract.field_type(name)
        data: Any = Annotated[list[value], msgspec.Meta(min_length=1, max_length=most)]
        fields: list[Any] = [
            ("shape", shape),
            ("datatype", self._datatypes[name]),
            ("data", data),
            ("parameters", Parameters | None, None),
        ]
        return msgspec.defstruct(
            f"Input{i}", fields, tag_field="name", tag=name, forbid_unknown_fields=True, frozen=True
        )

    def metadata(self, versions: list[str]) -> ModelMetadata:
        inputs = [
            TensorMetadata(
                f.name,
                ("INT64" if f.dtype == "integer" else "FP64")
                if isinstance(f, NumericFeature)
                else "BYTES",
                [-1],
                {"nullable": True} if f.nullable else None,
            )
            for f in self.features
        ]
        k = len(self.classes)
        outputs = [
            TensorMetadata("probabilities", "FP64", [-1, k], {"classes": self.class_order}),
            TensorMetadata("label", self.label_type, [-1]),
        ]
        parameters: Parameters = {"classes": self.class_order, "missing_value": "null"}
        if self.contract.takes_ids:
            parameters["instance_id_input"] = ID
        return ModelMetadata(self.name, versions, PLATFORM, inputs, outputs, parameters)

    # ----------------------------------------------------------------------- requests

    def decode(self, body: bytes) -> ValidInfer:
        """The request's rows in schema order and its instances, as /v1 would have decoded them;
        TensorInvalid naming every problem by input and element."""
        try:
            request: Any = self._decoder.decode(body)
        except msgspec.ValidationError as exc:
            raise TensorInvalid("request body", self._explain(body, exc)) from None
        except msgspec.DecodeError as exc:
            raise TensorInvalid("request body", [_issue("$", malformed(body, exc))]) from None
        except (UnicodeDecodeError, RecursionError):
            raise TensorInvalid("request body", [_issue("$", "not valid JSON text")]) from None
        columns, issues = _columns(request.inputs)
        issues += [
            _issue(n, f"input '{n}' is missing; send one tensor per feature")
            for n in self.names
            if n not in columns
        ]
        if issues:
            raise TensorInvalid("request body", issues[:MAX_ISSUES])
        rows = list(zip(*(columns[n] for n in self.names), strict=True))
        make = self.contract.instance_type
        outputs = [o.name for o in request.outputs] if request.outputs else list(OUTPUTS)
        ids = columns.get(ID) if self.contract.takes_ids else None
        decoded = Decoded([make(*row) for row in rows], rows, ids)
        return ValidInfer(decoded, request.id, outputs)

    def _explain(self, body: bytes, first: msgspec.ValidationError) -> list[DataIssue]:
        """Every problem, input by input and element by element; the decoder's own message should
        this walk find nothing."""
        try:
            raw = msgspec.json.decode(body)
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
            raw = None
        issues: list[DataIssue] = []
        if isinstance(raw, dict):
            issues += [_issue("$", f"unknown field '{_short(k)}'") for k in raw if k not in _TOP]
            inputs = raw.get("inputs")
            if not isinstance(inputs, list) or not inputs:
                issues.append(_issue("$", "`inputs` must be a non-empty array of tensors"))
            else:
                for i, tensor in enumerate(inputs):
                    self._explain_tensor(i, tensor, issues)
                    if len(issues) >= MAX_ISSUES:
                        break
                named = [t.get("name") for t in inputs if isinstance(t, dict)]
                issues += [
                    _issue(n, f"input '{n}' is given twice")
                    for n in self.names
                    if named.count(n) > 1
                ]
                if len(inputs) > len(self._datatypes) and not issues:
                    issues.append(_issue("$", f"{len(inputs)} inputs; send one per feature"))
            for key, kind in (
                ("id", str | None),
                ("parameters", Parameters | None),
                ("outputs", list[RequestedOutput] | None),
            ):
                try:
                    msgspec.convert(raw.get(key), kind)
                except msgspec.ValidationError as exc:
                    issues.append(_issue("$", f"`{key}`: {plain(str(exc))}"))
        if not issues:
            issues.append(_issue("$", plain(str(first)) + _where(str(first))))
        return issues[:MAX_ISSUES]

    def _explain_tensor(self, i: int, tensor: Any, issues: list[DataIssue]) -> None:
        if not isinstance(tensor, dict):
            issues.append(_issue("$", f"inputs[{i}] must be a tensor object"))
            return
        name = tensor.get("name")
        if not isinstance(name, str):
            issues.append(_issue("$", f"inputs[{i}] has no `name`"))
            return
        if name not in self._datatypes:
            issues.append(
                _issue(
                    "$",
                    f"unknown input '{_short(name)}'; the inputs are {', '.join(self._datatypes)}",
                )
            )
            return
        self._explain_fields(name, tensor, issues)

    def _explain_fields(self, name: str, tensor: dict[str, Any], issues: list[DataIssue]) -> None:
        where = f"input '{name}'"
        params = tensor.get("parameters")
        if isinstance(params, dict) and "binary_data_size" in params:
            issues.append(_issue(name, f"{where}: {BINARY}"))
            return
        issues += [
            _issue(name, f"{where}: unknown field '{_short(k)}'")
            for k in tensor
            if k not in _TENSOR
        ]
        allowed = get_args(self._datatypes[name])
        if tensor.get("datatype") not in allowed:
            kind = (
                "instance ids"
                if name == ID
                else "numeric feature"
                if len(allowed) > 1
                else "categorical feature"
            )
            issues.append(
                _issue(name, f"{where}: datatype must be {' or '.join(allowed)} ({kind})")
            )
        try:
            msgspec.convert(tensor.get("parameters"), Parameters | None)
        except msgspec.ValidationError as exc:
            issues.append(_issue(name, f"{where}: `parameters` {plain(str(exc))}"))
        shape = tensor.get("shape")
        if not isinstance(shape, list) or len(shape) != 1 or not _count(shape[0], self.contract):
            issues.append(
                _issue(
                    name, f"{where}: shape must be [n], n from 1 to {self.contract.max_instances}"
                )
            )
        data = tensor.get("data")
        if not isinstance(data, list) or not 1 <= len(data) <= self.contract.max_instances:
            issues.append(
                _issue(
                    name,
                    f"{where}: `data` must be an array of 1 to {self.contract.max_instances} values",
                )
            )
            return
        typ: Any = InstanceId | None if name == ID else self.contract.field_type(name)
        for j, value in enumerate(data):
            try:
                msgspec.convert(value, typ)
            except msgspec.ValidationError as exc:
                issues.append(_issue(name, f"{where} element {j}: {plain(str(exc))}"))
                if len(issues) >= MAX_ISSUES:
                    return

    # ----------------------------------------------------------------------- answers

    def response(
        self,
        version: str,
        request_id: str,
        labels: Sequence[Any],
        proba: Any,
        outputs: Sequence[str],
    ) -> InferResponse:
        n, k = proba.shape
        tensors = {
            "probabilities": OutputTensor(
                "probabilities",
                "FP64",
                [n, k],
                proba.ravel().tolist(),
                {"classes": self.class_order},
            ),
            "label": OutputTensor(
                "label",
                self.label_type,
                [n],
                list(labels) if self.label_type == "INT64" else [str(v) for v in labels],
            ),
        }
        return InferResponse(self.name, version, request_id, [tensors[o] for o in outputs])


def _columns(tensors: Sequence[Any]) -> tuple[dict[str, list[Any]], list[DataIssue]]:
    """The values of each decoded input tensor by name, and what is wrong with the tensors
    together: an input given twice, a shape that is not its length, lengths that differ, a
    fraction in an integer tensor."""
    columns: dict[str, list[Any]] = {}
    issues: list[DataIssue] = []
    first: tuple[str, int] | None = None
    for tensor in tensors:
        name = type(tensor).__struct_config__.tag
        data = tensor.data
        if name in columns:
            issues.append(_issue(name, f"input '{name}' is given twice"))
            continue
        columns[name] = data
        if tensor.shape[0] != len(data):
            issues.append(
                _issue(name, f"input '{name}' has shape {tensor.shape} but {len(data)} values")
            )
        if first is None:
            first = (name, len(data))
        elif len(data) != first[1]:
            issues.append(
                _issue(
                    name,
                    f"input '{name}' has {len(data)} values but input '{first[0]}' has "
                    f"{first[1]}; every input holds one value per instance",
                )
            )
        if tensor.datatype in WHOLE:
            issues += [
                _issue(name, f"input '{name}' element {j}: not a whole number ({tensor.datatype})")
                for j, v in enumerate(data)
                if v is not None and not float(v).is_integer()
            ][:MAX_ISSUES]
    return columns, issues


def _issue(column: str, sentence: str) -> DataIssue:
    return DataIssue(column, sentence, 0)


def _short(key: str) -> str:
    return key if len(key) <= MAX_KEY_CHARS else key[:MAX_KEY_CHARS] + "…"


def _count(value: Any, contract: Contract) -> bool:
    return (
        isinstance(value, int)
        and not isinstance(value, bool)
        and 1 <= value <= contract.max_instances
    )


def _where(message: str) -> str:
    at = message.rsplit(" - at `", 1)
    return f" (at {at[1].rstrip('`')})" if len(at) == 2 else ""
