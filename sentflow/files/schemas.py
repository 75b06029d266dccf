"""Schemas for every value sentflow reads back from a file: types and bounds are checked before anything is used.

Built on pydantic in strict mode (no coercion: `"3"` is not 3, `true` is not 1) with unknown keys refused, so a
damaged or crafted header fails with one line naming the file and the field instead of reaching a constructor.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Annotated, Final, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter, ValidationError, model_validator

from sentflow.errors import SentflowError

MAX_DIM = 1 << 16  # the widest embedding a file may describe
MAX_ROWS = 1 << 40  # the most rows a file or resume state may announce
MAX_ITEMS = 256  # entries of a dict or list inside a header
MAX_SEED = (1 << 63) - 1  # torch and numpy seeds are 64-bit
MAX_EPOCHS = 1_000_000
MAX_BATCH = 1 << 20  # rows per batch (training) or sentences per forward pass
MAX_LENGTH = 1 << 20  # tokens per sentence
MIN_LENGTH = 2  # tokens per sentence at least: a transformer's [CLS] and [SEP]
MAX_WARMUP = 1 << 30  # learning-rate warm-up steps
MAX_MINUTES = 1e7  # a wall-clock budget
MAX_LR = 10.0
MAX_PAIRS = 10_000_000  # random pairs a diagnosis draws: ~160 MB of indices, far more than any statistic needs
PipelineFormat = Literal["sentflow-pipeline"]
FlowsFormat = Literal["sentflow.flows/1"]
CompactFormat = Literal["sentflow-compact-index/1"]
PIPELINE_FORMAT: Final[PipelineFormat] = "sentflow-pipeline"
FLOWS_FORMAT: Final[FlowsFormat] = "sentflow.flows/1"
COMPACT_FORMAT: Final[CompactFormat] = "sentflow-compact-index/1"
CALIBRATION_SUFFIX = ".safetensors"  # a bare calibration file (any case); other output names are pipeline folders

Name = Annotated[str, StringConstraints(max_length=4096)]
Key = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Int = Annotated[int, Field(ge=-(1 << 63), le=(1 << 63) - 1)]  # 64-bit (seeds); json writes and reads them exactly
Real = Annotated[float, Field(allow_inf_nan=False)]
Dim = Annotated[int, Field(ge=1, le=MAX_DIM)]
Unit = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]
Count = Annotated[int, Field(ge=0, le=MAX_ROWS)]
Scalar = None | bool | Int | Real | Name
Value = Scalar | Annotated[list[Scalar], Field(max_length=MAX_ITEMS)]
Params = Annotated[dict[Key, Value], Field(max_length=MAX_ITEMS)]
Seed = Annotated[int, Field(ge=0, le=MAX_SEED)]
Epochs = Annotated[int, Field(ge=1, le=MAX_EPOCHS)]
Patience = Annotated[int, Field(ge=0, le=MAX_EPOCHS)]
BatchSize = Annotated[int, Field(ge=1, le=MAX_BATCH)]

S = TypeVar("S", bound="Schema")


class Schema(BaseModel):
    """Strict, closed, immutable: the base of every file schema."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


def parse(schema: type[S], data: object, where: object) -> S:
    """`data` validated against `schema`, or a one-line SentflowError naming `where` and the first bad field."""
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        raise SentflowError(f"{where}: {describe(exc)}") from None


def parse_json(schema: type[S] | TypeAdapter, text: str | bytes, where: object):
    """Like `parse`, from JSON text (pydantic's parser: bounded nesting); `schema` may also be a TypeAdapter.

    NaN and Infinity, which pydantic's parser reads but JSON does not have, are refused anywhere in the text,
    even under keys a schema ignores."""
    validate = schema.validate_json if isinstance(schema, TypeAdapter) else schema.model_validate_json
    try:
        value = validate(text)
    except ValidationError as exc:
        raise SentflowError(f"{where}: {describe(exc)}") from None
    try:
        json.loads(text, parse_constant=_refuse_constant)
    except ValueError as exc:
        raise SentflowError(f"{where}: {exc}") from None
    return value


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def parse_value(adapter: TypeAdapter, value: object, where: object):
    """One value (e.g. a field of a text file) validated by `adapter`, or a one-line SentflowError."""
    try:
        return adapter.validate_python(value)
    except ValidationError as exc:
        raise SentflowError(f"{where}: {value!r:.40}: {describe(exc)}") from None


def describe(exc: ValidationError) -> str:
    """The first problem as `field 'a.b': message`, plus how many more there are.

    A value that fits no branch of a union fails once per branch: those count as one problem, reported by the
    branch whose constraint (not its type) failed, if any."""
    errors = exc.errors(include_url=False, include_context=False, include_input=False)
    loc = _field_path(errors[0]["loc"])
    branches = [e for e in errors if _field_path(e["loc"]) == loc]
    constraint = next((e for e in branches if not e["type"].endswith(("_type", "_parsing"))), None)
    if constraint is not None or len(branches) == 1:
        message = (constraint or branches[0])["msg"]
    else:
        message = "Input is of an unsupported type"
    text = f"field {'.'.join(map(str, loc))!r}: {message}" if loc else message
    more = len(errors) - len(branches)
    return text + (f" (and {more} more problems)" if more else "")


_BRANCHES = {"bool", "int", "float", "str", "none"}
_BRANCH_PREFIXES = ("constrained-", "list[", "dict[", "nullable[", "union[", "function-")


def _field_path(loc: tuple) -> tuple:
    """A pydantic error location without its union branch tags."""
    return tuple(p for p in loc if not (isinstance(p, str) and (p in _BRANCHES or p.startswith(_BRANCH_PREFIXES))))


# --- calibrations ------------------------------------------------------------------------------------------------


class CalibrationHeader(Schema):
    """The JSON header of a calibration file (`Calibrator.save`)."""

    method: Key
    version: Name
    params: Params = {}
    dim_in: Dim
    dim_out: Dim
    model: Name | None = None
    pooling: Name | None = None


class QuantizerHeader(Schema):
    """The JSON header of a compact-search quantizer file (`Quantizer.save`)."""

    spec: Key
    dim: Dim


Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
FileName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$")]  # no path, no ..


class IndexFile(Schema):
    """One file of an index directory and the sha256 of its bytes."""

    name: FileName
    sha256: Sha256


class IndexFiles(Schema):
    """The files of an index directory: the codes searched first are required; the int8 rescoring codes come as a
    pair (their quantizer and codes) or not at all; snippets are optional."""

    quantizer: IndexFile
    codes: IndexFile
    ids: IndexFile
    rescorer: IndexFile | None = None
    rescore_codes: IndexFile | None = None
    snippets: IndexFile | None = None
    centroids: IndexFile | None = None
    list_offsets: IndexFile | None = None
    list_order: IndexFile | None = None

    @model_validator(mode="after")
    def _rescoring_pair(self) -> IndexFiles:
        if (self.rescorer is None) != (self.rescore_codes is None):
            raise ValueError("rescorer and rescore_codes come together or not at all")
        if len({self.centroids is None, self.list_offsets is None, self.list_order is None}) > 1:
            raise ValueError("centroids, list_offsets and list_order come together or not at all")
        return self

    def paths(self) -> dict[str, IndexFile]:
        """The files present, by key."""
        return {key: entry for key, entry in self if entry is not None}


class IndexPipeline(Schema):
    """What an index remembers of the pipeline that made its vectors (`sentflow index`); queries are encoded by it."""

    model: Annotated[str, StringConstraints(min_length=1, max_length=4096)]
    pooling: Annotated[str, StringConstraints(min_length=1, max_length=512)]
    max_length: Annotated[int, Field(ge=MIN_LENGTH, le=MAX_LENGTH)]
    normalize: bool
    fingerprint: Sha256
    directory: Annotated[str, StringConstraints(min_length=1, max_length=4096)] | None = None


class CompactManifest(Schema):
    """index.json of a compact-search index directory (`CompactIndex.save`): every field required, typed and
    bounded (`pipeline` is null for an index built in Python from vectors)."""

    format: CompactFormat
    quantize: Key
    rescore: Annotated[int, Field(ge=0, le=1 << 20)]
    hnsw: bool
    lists: Annotated[int, Field(ge=1, le=1 << 20)] | None = None  # an inverted file's k-means cells
    rows: Annotated[int, Field(ge=1, le=1 << 40)]
    dim: Dim
    pipeline: IndexPipeline | None
    files: IndexFiles


# --- pipelines and resumable runs --------------------------------------------------------------------------------


class PipelineConfig(Schema):
    """pipeline.json."""

    format: PipelineFormat
    sentflow_version: Name
    model: Name
    pooling: Annotated[str, StringConstraints(min_length=1, max_length=512)]
    max_length: Annotated[int, Field(ge=MIN_LENGTH, le=MAX_LENGTH)]
    normalize: bool
    calibration: Literal["calibration.safetensors"] | None


class ResumeState(Schema):
    """The `.OUT.partial.json` that lets an interrupted `encode_file` continue."""

    input_sha256: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
    lines: Count
    encoder: Params
    done: Count
    rows_sha256: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]  # of the `done` rows' bytes


# --- flow checkpoints --------------------------------------------------------------------------------------------


class FlowHeader(Schema):
    """What a flows checkpoint says it holds (the model is rebuilt from it); training counters may follow."""

    model_config = ConfigDict(extra="ignore")

    format: FlowsFormat
    model: Key
    config: Params
    data_shape: Annotated[list[Dim], Field(min_length=1, max_length=4)]


MODEL_CONFIG = TypeAdapter(Params)  # a flow model's constructor options, e.g. from `flows train --config`
Metric = Annotated[dict[Key, Int | Real | None], Field(max_length=64)]


class TrainSettings(Schema):
    """`flows.train.TrainConfig` as saved in a checkpoint: informational (a resumed fit uses its own settings), so
    fields may be missing or added by other versions, but each value is typed, finite and bounded."""

    model_config = ConfigDict(extra="ignore")

    epochs: Epochs | None = None
    batch_size: BatchSize | None = None
    lr: Annotated[float, Field(ge=0.0, le=MAX_LR, allow_inf_nan=False)] | None = None
    optimizer: Key | None = None
    warmup_steps: Annotated[int, Field(ge=0, le=MAX_WARMUP)] | None = None
    clip_norm: Annotated[float, Field(ge=0.0, le=1e9, allow_inf_nan=False)] | None = None
    seed: Seed | None = None
    max_minutes: Annotated[float, Field(ge=0.0, le=MAX_MINUTES, allow_inf_nan=False)] | None = None
    progress: bool | None = None
    threads: Annotated[int, Field(ge=1, le=4096)] | None = None
    noise: Annotated[float, Field(ge=0.0, allow_inf_nan=False)] | None = None  # absolute: scaled by the data
    patience: Patience | None = None


class TrainCounters(Schema):
    """The counters a resumed fit continues from; the header keys stay in `model_extra`, compared for equality only."""

    model_config = ConfigDict(extra="allow")

    train: TrainSettings | None = None  # the settings of the fit that wrote it (informational)
    epoch: Count = 0
    step: Count = 0
    seconds: Annotated[float, Field(ge=0.0, allow_inf_nan=False)] = 0.0
    examples: Count = 0
    history: Annotated[list[Metric], Field(max_length=MAX_EPOCHS)] = []
    best: Real | None = None
    waited: Count = 0

    def as_state(self) -> dict:
        """The TrainState fields, an unset best as +inf."""
        state = {name: getattr(self, name) for name in type(self).model_fields if name != "train"}
        return {**state, "best": math.inf if self.best is None else self.best}


# --- data sets read as text ----------------------------------------------------------------------------------------

SCORE: TypeAdapter[float] = TypeAdapter(  # "4.2" -> 4.2
    Annotated[float, Field(strict=False, allow_inf_nan=False, ge=-1e6, le=1e6)]
)
GRADE: TypeAdapter[int] = TypeAdapter(Annotated[int, Field(strict=False, ge=-1000, le=1000)])  # a qrels grade
DocId = Annotated[str, StringConstraints(min_length=1, max_length=1024)]
Text = Annotated[str, StringConstraints(max_length=1 << 22)]


class BeirRecord(Schema):
    """One line of a BEIR corpus.jsonl or queries.jsonl (other keys, e.g. metadata, are ignored)."""

    model_config = ConfigDict(extra="ignore")

    id: DocId = Field(alias="_id")
    text: Text
    title: Text | None = None


class Int8Recipe(Schema):
    """What `onnx-int8` quantises (see `onnx_backend.INT8_RECIPE`)."""

    operators: Annotated[list[Key], Field(min_length=1, max_length=32)] | None
    weights: Literal["QInt8", "QUInt8"]
    per_channel: bool
    fp32_last_ffn_inputs: Annotated[int, Field(ge=0, le=MAX_ITEMS)]


def is_calibration_path(path: str | os.PathLike) -> bool:
    """Whether a path names a bare calibration file (`.safetensors`, any case) rather than a pipeline directory."""
    return Path(path).suffix.lower() == CALIBRATION_SUFFIX
