"""One artifact for the whole map text -> final vector: encoder settings, calibration and normalisation.

A pipeline directory holds `pipeline.json` (model, pooling, max_length, normalize, sentflow version) and, when
there is one, `calibration.safetensors`. Loading it reads JSON and safetensors only: no pickle, and the model is
loaded with `trust_remote_code` off, so nothing in the directory is executed.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sentflow._version import __version__
from sentflow.calibration.base import Calibrator, load_calibration
from sentflow.encoding.factory import make_encoder
from sentflow.errors import Param, SentflowError
from sentflow.files.io import atomic_directory, tensors_digest
from sentflow.files.schemas import PIPELINE_FORMAT, PipelineConfig, is_calibration_path, parse, parse_json
from sentflow.protocols import ModelEncoder

CONFIG_NAME = "pipeline.json"
CALIBRATION_NAME = "calibration.safetensors"
_MAX_CONFIG_BYTES = 64 * 1024


class Pipeline:
    """Encode texts, calibrate (whitening or BERT-flow, optional) and L2-normalise (optional), as one object.

    `save(DIR)` writes `pipeline.json` and `calibration.safetensors`; `sentflow.load(DIR)` reads them back.

    Args:
        encoder: The `Encoder` (or GloVe encoder) whose settings the pipeline records.
        calibration: A fitted calibration of the encoder's vectors, or None.
        normalize: L2-normalise the final vectors, so that inner products are cosines.
    """

    def __init__(self, encoder: ModelEncoder, calibration: Calibrator | None = None, normalize: bool = False) -> None:
        if calibration is not None:
            calibration.check_fitted()
            check_width(calibration, encoder)
        self.encoder = encoder
        self.calibration = calibration
        self.normalize = bool(normalize)

    @property
    def dim(self) -> int:
        """Size of the vectors the pipeline returns."""
        return self.calibration.n_components_out_ if self.calibration is not None else self.encoder.dim

    def output_width(self, input_width: int) -> int:
        """Width of `transform`'s output on vectors `input_width` wide: the calibration's output, else the input's."""
        return self.calibration.output_width(input_width) if self.calibration is not None else input_width

    def transform(self, embeddings) -> np.ndarray:
        """Calibrate then (optionally) L2-normalise raw encoder embeddings: (n, d_in) -> (n, dim) float32."""
        vectors = self.calibration.transform(embeddings) if self.calibration is not None else np.asarray(embeddings)
        vectors = np.asarray(vectors, dtype=np.float32)
        if self.normalize:
            vectors = l2_normalize(vectors)
        return vectors

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """The final vectors of `texts`: encoder, then calibration, then normalisation."""
        return self.transform(self.encoder.encode(texts))

    def config(self) -> dict:
        """The JSON-able description written to pipeline.json."""
        return {
            "format": PIPELINE_FORMAT,
            "sentflow_version": __version__,
            "model": portable_model_name(self.encoder.model_name),
            "pooling": self.encoder.pooling,
            "max_length": int(self.encoder.max_length),
            "normalize": self.normalize,
            "calibration": CALIBRATION_NAME if self.calibration is not None else None,
        }

    def vector_settings(self) -> dict:
        """What decides the pipeline's vectors (a resumed encoding must use the same): its settings, the encoder's
        backend and the fingerprint of its calibration."""
        config = {k: v for k, v in self.config().items() if k != "sentflow_version"}
        return {**config, "backend": self.encoder.backend_key, "fingerprint": self.fingerprint()}

    def fingerprint(self) -> str:
        """sha256 of what decides the pipeline's vectors: its settings and its calibration's tensors."""
        settings = {k: v for k, v in self.config().items() if k != "sentflow_version"}
        digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
        if self.calibration is not None:
            digest.update(tensors_digest(self.calibration._tensors()).encode())
        return digest.hexdigest()

    def save(self, directory: str | os.PathLike) -> Path:
        """Write the pipeline directory atomically (a new directory swapped in only once complete)."""
        config = self.config()
        parse(PipelineConfig, config, f"{directory}: pipeline config")  # what is written must load again
        with atomic_directory(directory, marker=CONFIG_NAME) as staging:
            if self.calibration is not None:
                self.calibration.save(staging / CALIBRATION_NAME, model=config["model"], pooling=config["pooling"])
            (staging / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        return Path(directory)

    def to_sentence_transformer(self, directory: str | os.PathLike) -> Path:
        """Write a standard sentence-transformers model directory computing the same vectors."""
        from sentflow.encoding.st_export import export_sentence_transformer

        return export_sentence_transformer(self.encoder, self.calibration, self.normalize, Path(directory))


def check_normalize_out(normalize: bool, out: str | os.PathLike | None, out_required: bool = False) -> None:
    """`normalize` is a pipeline setting: refused when the output is a bare `.safetensors` calibration (or, with
    `out_required`, when there is no output at all). The one home of this rule for `fit`, `tune` and `save_fitted`."""
    if normalize and (is_calibration_path(out) if out is not None else out_required):
        raise SentflowError(
            Param("normalize", True), " is a pipeline setting: give ", Param("out"), " a directory name, not a "
            ".safetensors file"
        )


def check_encoder_known(out: str | os.PathLike, known: bool) -> None:
    """Refuse to write a pipeline directory whose encoder is unknown (vectors read from .npy files)."""
    if not known and not is_calibration_path(out):
        raise SentflowError(
            f"{out}: a pipeline directory names the encoder that made its vectors, and these came from .npy files: "
            "name it with ", Param("model"), " and ", Param("pooling"), ", or write a .safetensors calibration instead",
            param="out",
        )


def save_fitted(
    calibration: Calibrator | None, out: str | os.PathLike, encoder: ModelEncoder | None = None, normalize: bool = False
) -> Path:
    """Write a fitted calibration: a `.safetensors` path gets the calibration alone, any other a pipeline directory.

    `encoder` is the encoder that made the vectors the calibration was fitted on, or None when that is unknown
    (vectors read from .npy files): a calibration file then records no model, and a pipeline is refused, since a
    pipeline that names the wrong encoder would silently give wrong vectors. `calibration` None (a tuning that
    chose no calibration) writes a pipeline of the encoder alone.
    """
    if is_calibration_path(out):
        if calibration is None:
            raise SentflowError(
                f"the chosen setting is no calibration, so there is nothing to write to {out}; give a directory "
                "name to write a pipeline"
            )
        check_normalize_out(normalize, out)
        model, pooling = (encoder.model_name, encoder.pooling) if encoder is not None else (None, None)
        calibration.save(out, model=model, pooling=pooling)
        return Path(out)
    check_encoder_known(out, encoder is not None)
    assert encoder is not None
    return Pipeline(encoder, calibration, normalize).save(out)


def check_width(calibration: Calibrator, encoder: ModelEncoder) -> None:
    """A calibration fits the encoder whose vectors it maps: as many input dimensions as the encoder's width."""
    if encoder.dim != calibration.n_features_in_:
        raise SentflowError(
            f"the calibration was fitted on {calibration.n_features_in_}-d vectors but {encoder.model_name!r} "
            f"({encoder.pooling}) makes {encoder.dim}-d ones: name the encoder that made them (",
            Param("model"), ", ", Param("pooling"), ")",
        )


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    """Rows divided by their Euclidean norm (a zero row stays zero)."""
    norms = np.linalg.norm(vectors.astype(np.float64), axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(vectors.dtype, copy=False)


def portable_model_name(name: str) -> str:
    """A local model directory as an absolute path (so the pipeline loads from anywhere); ids unchanged."""
    path = Path(name)
    return str(path.resolve()) if path.is_dir() else name


def read_config(directory: Path) -> PipelineConfig:
    """pipeline.json, validated against its schema (format, field types and bounds)."""
    path = directory / CONFIG_NAME
    if not path.is_file():
        raise SentflowError(f"{directory}: not a sentflow pipeline directory (no {CONFIG_NAME})")
    if path.stat().st_size > _MAX_CONFIG_BYTES:
        raise SentflowError(f"{path}: too large for a pipeline config ({path.stat().st_size} bytes)")
    return parse_json(PipelineConfig, path.read_bytes(), path)


def load_pipeline(directory: str | os.PathLike, **encoder_options) -> Pipeline:
    """Read a pipeline directory; `encoder_options` (device, batch_size, cache, ...) are runtime choices."""
    directory = Path(directory)
    config = read_config(directory)
    calibration = None
    if config.calibration is not None:
        calibration = load_calibration(directory / config.calibration)
        check_fitted_for(calibration, config, directory)
    encoder = make_encoder(config.model, config.pooling, max_length=config.max_length, **encoder_options)
    try:
        return Pipeline(encoder, calibration, config.normalize)
    except SentflowError as exc:
        raise SentflowError(f"{directory}: ", *exc.parts, param=exc.param) from None


def check_fitted_for(calibration: Calibrator, config: PipelineConfig, directory: Path) -> None:
    """A calibration recorded for another model or pooling does not belong in this pipeline."""
    fitted = getattr(calibration, "fitted_for_", {}) or {}
    for key in ("model", "pooling"):
        if fitted.get(key) not in (None, getattr(config, key)):
            raise SentflowError(
                f"{directory}: its calibration was fitted for {key} {fitted[key]!r}, "
                f"the pipeline uses {getattr(config, key)!r}"
            )


def load(path: str | os.PathLike) -> Calibrator | Pipeline:
    """Load a pipeline directory or a calibration file written by sentflow (JSON and safetensors only).

    Args:
        path: A pipeline directory (holding `pipeline.json`) or a calibration `.safetensors` file.

    Returns:
        The `Pipeline`, or the bare calibration (`Whitening` or `BertFlow`).

    Raises:
        SentflowError: The path is neither, or a file fails its schema, checksum or shape check.
    """
    from sentflow.tasks.sources import CalibrationSource, PipelineSource, resolve_source

    source = resolve_source(path, (PipelineSource, CalibrationSource), role="sentflow.load")
    if isinstance(source, PipelineSource):
        return load_pipeline(source.path)
    assert isinstance(source, CalibrationSource)
    return load_calibration(source.path)
