"""The calibrator interface shared by whitening and BERT-flow, and reading calibration files back."""

from __future__ import annotations

import inspect
import os
from collections.abc import Iterable
from importlib import import_module
from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import create_model
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.exceptions import NotFittedError as SklearnNotFittedError

from sentflow._version import __version__
from sentflow.calibration.stats import as_matrix
from sentflow.errors import SentflowError
from sentflow.files.finite import check_finite
from sentflow.files.io import first_line, load_tensors, save_tensors
from sentflow.files.schemas import CalibrationHeader, Schema, parse


class NotFittedError(SentflowError, SklearnNotFittedError):
    """A calibration used before `fit`: both a SentflowError and scikit-learn's NotFittedError."""


# the method a file records -> the module defining its class: a fixed table, so a new process can load a file after
# `import sentflow` alone (a registry filled on subclass import stays empty until someone imports the class)
CALIBRATOR_CLASSES = {
    "whitening": ("sentflow.calibration.whitening", "Whitening"),
    "flow": ("sentflow.calibration.bertflow", "BertFlow"),
}
_RUNTIME_PARAMS = ("device", "progress", "threads", "max_minutes", "checkpoint_dir")  # how to run: never saved


class Calibrator(TransformerMixin, BaseEstimator):
    """fit / transform / inverse_transform / save / to_torch on (n, d) embeddings.

    Subclasses set `method` (the name files record) and `_parameter_constraints` (a pydantic type per saved
    constructor parameter, as scikit-learn's estimators declare theirs), implement `_tensors()` and
    `_restore(tensors, header)`, and keep `n_features_in_` and `n_components_out_` once fitted. The schema of the
    saved parameters, `Params`, is derived from the constraints and the constructor's defaults.
    """

    method: ClassVar[str]
    _parameter_constraints: ClassVar[dict[str, Any]]
    Params: ClassVar[type[Schema]]  # the saved constructor parameters, validated on load
    fitted_for_: dict[str, str | None]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "_parameter_constraints" in cls.__dict__:
            cls.Params = params_schema(cls)

    def fit_chunks(self, chunks: Iterable[np.ndarray]) -> Calibrator:
        """Fit on row blocks read one at a time. Here the blocks are stacked and given to `fit`; a calibrator whose
        statistics stream (`Whitening`) overrides this to hold one block at a time."""
        blocks = list(chunks)
        if not blocks:
            raise nothing_to_fit()
        return self.fit(np.concatenate(blocks))

    def output_width(self, input_width: int) -> int:
        """Width of `transform`'s output (`n_components_out_`); `transform` itself checks the input's width."""
        self.check_fitted()
        return int(self.n_components_out_)

    def check_fitted(self) -> None:
        """Raise NotFittedError (a SentflowError and scikit-learn's NotFittedError) unless fitted."""
        if not self.__sklearn_is_fitted__():
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet; call fit first")

    def _check_input(self, X, name: str = "X") -> np.ndarray:
        """Validate shape and values against what the calibrator was fitted on."""
        self.check_fitted()
        X = as_matrix(X, name)
        if X.shape[1] != self.n_features_in_:
            raise SentflowError(
                f"{name} has {X.shape[1]} features but the {self.method} calibration was fitted on "
                f"{self.n_features_in_}-d embeddings"
            )
        return X

    def _finite(self, Z: np.ndarray) -> np.ndarray:
        """Z, unless the map overflowed (inputs far outside the fitted data): never return NaN/Inf."""
        check_finite(Z, f"the {self.method} output overflows for these inputs (far outside the fitted data):")
        return Z

    def save(self, path: str | os.PathLike, *, model: str | None = None, pooling: str | None = None) -> None:
        """Write the calibration as safetensors + JSON header (method, dims, model, pooling, version)."""
        self.check_fitted()
        fitted_for = dict(getattr(self, "fitted_for_", {}))
        fitted_for.update({k: v for k, v in (("model", model), ("pooling", pooling)) if v is not None})
        meta = {
            "method": self.method,
            "version": __version__,
            "params": self._saved_params(),
            "dim_in": int(self.n_features_in_),
            "dim_out": int(self.n_components_out_),
            "model": fitted_for.get("model"),
            "pooling": fitted_for.get("pooling"),
        }
        parse(CalibrationHeader, meta, path)  # what is written must load again
        save_tensors(path, self._tensors(), meta)

    def _saved_params(self) -> dict[str, Any]:
        """The constructor parameters that describe the fit (not how it runs), as plain JSON values."""
        params = {k: v for k, v in self.get_params().items() if k not in _RUNTIME_PARAMS}
        return {k: v.item() if isinstance(v, np.generic) else v for k, v in params.items()}

    def _validate_params(self) -> None:
        """Check the parameters against the schema their saved file must satisfy; one line names the first bad one."""
        parse(self.Params, self._saved_params(), f"{type(self).__name__} parameters")

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "n_features_in_")

    def _tensors(self) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def _restore(self, tensors: dict[str, torch.Tensor], header: CalibrationHeader) -> None:
        raise NotImplementedError

    def to_torch(self) -> torch.nn.Module:
        """The fitted map as a torch module, for use inside a model or a serving graph.

        Returns:
            An `nn.Module` mapping (n, d) embeddings to calibrated vectors, as `transform` does.
        """
        raise NotImplementedError


def nothing_to_fit() -> SentflowError:
    """The error of a fit given no rows, in one wording for every calibrator."""
    return SentflowError("no rows to fit on")


def params_schema(cls: type[Calibrator]) -> type[Schema]:
    """The strict schema of a calibrator's saved parameters: its constraints, with its constructor's defaults."""
    defaults = inspect.signature(cls.__init__).parameters
    fields: dict[str, Any] = {
        name: (kind, defaults[name].default) for name, kind in cls._parameter_constraints.items()
    }
    return create_model(f"{cls.__name__}Params", __base__=Schema, **fields)


def calibrator_class(method: str, path: str | os.PathLike) -> type[Calibrator]:
    """The class that files of `method` load as (its module imported on demand); `path` names the file in errors."""
    if method not in CALIBRATOR_CLASSES:
        raise SentflowError(f"{path}: unknown calibration method {method!r}")
    module, name = CALIBRATOR_CLASSES[method]
    return getattr(import_module(module), name)


def load_calibration(path: str | os.PathLike) -> Calibrator:
    """Load any calibration written by `Calibrator.save` (no pickle: safetensors + a JSON header, validated)."""
    tensors, header = load_tensors(path, CalibrationHeader)
    kind = calibrator_class(header.method, path)
    params = parse(kind.Params, header.params, f"{path}: {header.method} parameters")
    calibrator = kind(**params.model_dump())
    try:
        calibrator._restore(tensors, header)
    except (KeyError, ValueError, RuntimeError) as exc:
        raise SentflowError(f"{path}: corrupted {header.method} calibration ({first_line(exc)})") from None
    calibrator.fitted_for_ = {"model": header.model, "pooling": header.pooling}
    return calibrator
