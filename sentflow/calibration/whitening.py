"""BERT-whitening: x -> (x - mean) U diag(s^-power), keeping the first k columns (Su et al., 2021)."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterable

import numpy as np
import torch
from torch import nn

from sentflow.calibration.base import Calibrator, nothing_to_fit
from sentflow.calibration.stats import MomentAccumulator, as_matrix
from sentflow.errors import Param, SentflowError
from sentflow.files.schemas import CalibrationHeader, Dim, Unit

SINGULAR_RTOL = 1e-10
EXPECTED_NULL_SHARE = 0.01  # up to 1% null directions: a post-LN hyperplane, logged rather than warned about
_log = logging.getLogger(__name__)


class SingularCovarianceWarning(UserWarning):
    """The covariance has directions of (near-)zero variance; a ridge is keeping them finite."""


class AffineMap(nn.Module):
    """y = (x - mean) @ weight, as a torch module (float32 buffers)."""

    mean: torch.Tensor
    weight: torch.Tensor

    def __init__(self, mean: np.ndarray, weight: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("weight", torch.as_tensor(weight, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) @ self.weight


class Whitening(Calibrator):
    """Whitening of sentence embeddings, a scikit-learn transformer.

    power=0.5 is BERT-whitening (identity covariance), 0 only centres and rotates, values in
    between whiten softly. `n_components` keeps the k directions of largest variance.
    `eps` is a ridge, relative to the largest covariance eigenvalue, added to every eigenvalue
    before the power is taken. It matters for (near-)null directions: the last layer of a post-LN
    transformer lies on a hyperplane (LayerNorm output satisfies sum_i (x_i - beta_i) / gamma_i = 0),
    so `cls` and `last-avg` embeddings have a singular covariance at full dimension. With eps=0 such
    a covariance is an error; with eps > 0 it is whitened, with a warning that names the count when more
    than 1% of the kept directions are null (a few, as on that hyperplane, are only logged at INFO level).
    Statistics are float64; `partial_fit` streams chunks with the same result as `fit`.

    Args:
        n_components: Dimensions kept, the directions of largest variance first (None: all of them).
        power: The exponent of the eigenvalues in `W = U diag(λ^-power)`: 0.5 whitens, 0 centres and rotates
            only (PCA), values in between whiten softly.
        eps: Ridge added to every eigenvalue, relative to the largest one (0: a singular covariance is an error).
    """

    method = "whitening"
    _parameter_constraints = {"n_components": Dim | None, "power": Unit, "eps": Unit}

    def __init__(self, n_components: int | None = None, power: float = 0.5, eps: float = 1e-9) -> None:
        self.n_components = n_components
        self.power = power
        self.eps = eps

    def fit(self, X, y=None) -> Whitening:
        """Estimate mean and whitening matrix from X (n_samples, n_features)."""
        return self.fit_chunks([X])

    def fit_chunks(self, chunks: Iterable) -> Whitening:
        """Fit on row chunks read one at a time (same result as `fit` on their concatenation)."""
        state = ("_moments", "_solution", "n_features_in_")
        before = {attr: self.__dict__.pop(attr) for attr in state if attr in self.__dict__}
        try:
            for chunk in chunks:
                self.partial_fit(chunk)
            if "_moments" not in self.__dict__:
                raise nothing_to_fit()
            self._solve()
        except BaseException:  # a refused refit leaves the earlier fit as it was
            for attr in state:
                self.__dict__.pop(attr, None)
            self.__dict__.update(before)
            raise
        return self

    def partial_fit(self, X, y=None) -> Whitening:
        """Add a chunk of rows to the running float64 moments; the matrix is solved lazily."""
        X = as_matrix(X)
        moments = self.__dict__.get("_moments")
        if moments is None:
            self._check_params(X.shape[1])
            moments = self._moments = MomentAccumulator(X.shape[1])
        moments.update(X)
        self.n_features_in_ = X.shape[1]
        self.__dict__.pop("_solution", None)
        return self

    @classmethod
    def from_moments(cls, moments: MomentAccumulator, **params) -> Whitening:
        """A fitted whitening from accumulated statistics (e.g. merged from the workers of a cluster)."""
        whitening = cls(**params)
        whitening._check_params(moments.n_features)
        whitening._moments = moments
        whitening.n_features_in_ = moments.n_features
        whitening._solve()
        return whitening

    def set_params(self, **params) -> Whitening:
        """Change parameters; a fitted whitening is re-solved from its moments on next use."""
        if "_solution" in self.__dict__ and "_moments" not in self.__dict__:
            raise SentflowError("this whitening was loaded from a file without its moments: fit a new one instead")
        super().set_params(**params)
        self.__dict__.pop("_solution", None)
        if "_moments" in self.__dict__:
            self._check_params(self.n_features_in_)
        return self

    def _check_params(self, n_features: int) -> None:
        self._validate_params()
        k = self.n_components
        if k is not None and k > n_features:
            raise SentflowError(Param("n_components", k), f" must be between 1 and the embedding size {n_features}")

    def _solve(self) -> dict[str, np.ndarray]:
        if "_solution" not in self.__dict__:
            self._solution = self._solve_from(self._moments)
        return self._solution

    def _solve_from(self, moments: MomentAccumulator) -> dict[str, np.ndarray]:
        k = self.n_components or moments.n_features
        if moments.count <= k and self.power > 0:
            raise SentflowError(
                f"fewer sentences ({moments.count}) than dimensions to whiten ({k}): "
                "fit on more sentences, or keep fewer dimensions"
            )
        covariance = moments.covariance()
        if not np.isfinite(covariance).all():
            raise SentflowError("the covariance overflows float64: the embeddings are too large; rescale them")
        values, vectors = np.linalg.eigh(covariance)
        values, vectors = np.clip(values[::-1], 0.0, None), vectors[:, ::-1]
        if values[0] <= 0 and self.power > 0:
            raise SentflowError("every row is the same vector (zero covariance): there is nothing to whiten")
        vectors *= np.sign(vectors[np.abs(vectors).argmax(axis=0), range(len(values))])
        kept = values[:k]
        self._report_null_directions(int((kept <= SINGULAR_RTOL * kept[0]).sum()), kept)
        scale = (kept + self.eps * values[0]) ** -self.power
        return {"mean": moments.mean(), "eigenvalues": values, "rotation": vectors, "weight": vectors[:, :k] * scale}

    def _report_null_directions(self, null: int, kept: np.ndarray) -> None:
        """Null directions are an error without a ridge; a few (the post-LayerNorm hyperplane) are only logged."""
        if not null or self.power == 0:
            return
        k = len(kept)
        message = (
            f"covariance is singular: {null} of the {k} kept directions have (near-)zero variance "
            f"(eigenvalue {kept[-1]:.3g} vs largest {kept[0]:.3g})"
        )
        if self.eps == 0:
            raise SentflowError(f"{message}; use more data, n_components <= {k - null}, or a ridge eps > 0")
        message += f"; the ridge eps={self.eps:g} keeps them finite"
        if null <= EXPECTED_NULL_SHARE * k:
            _log.info("%s (expected for post-LayerNorm embeddings, which lie on a hyperplane)", message)
        else:
            warnings.warn(message, SingularCovarianceWarning, stacklevel=4)

    @property
    def mean_(self) -> np.ndarray:
        return self._solve()["mean"]

    @property
    def components_(self) -> np.ndarray:
        """The (k, n_features) whitening matrix, rows as output directions (scikit-learn's `PCA` orientation):
        `transform(X) == (X - mean_) @ components_.T`."""
        return self._solve()["weight"].T

    def linear_map(self) -> tuple[np.ndarray, np.ndarray]:
        """(W, b) with transform(X) = X W + b: W = components_.T (d, k), b = -mean_ W."""
        self.check_fitted()
        sol = self._solve()
        return sol["weight"], -sol["mean"] @ sol["weight"]

    @property
    def eigenvalues_(self) -> np.ndarray:
        """All covariance eigenvalues, largest first."""
        return self._solve()["eigenvalues"]

    @property
    def n_components_out_(self) -> int:
        return self.n_components or self.n_features_in_

    @property
    def n_samples_seen_(self) -> int:
        return self._moments.count if "_moments" in self.__dict__ else 0

    def transform(self, X) -> np.ndarray:
        """Whitened (n, k) vectors, in X's float dtype."""
        X = self._check_input(X)
        sol = self._solve()
        with np.errstate(over="ignore", invalid="ignore"):
            Z = (X - sol["mean"].astype(X.dtype)) @ sol["weight"].astype(X.dtype)
        return self._finite(Z.astype(X.dtype, copy=False))

    def inverse_transform(self, Z) -> np.ndarray:
        """Map whitened vectors back (full rank only: n_components=None)."""
        if self.n_components_out_ != self.n_features_in_:
            raise SentflowError("inverse_transform needs a full-rank whitening (n_components=None)")
        Z = self._check_input(Z, "Z")
        sol = self._solve()
        scale = (sol["eigenvalues"] + self.eps * sol["eigenvalues"][0]) ** self.power
        return ((Z.astype(np.float64) * scale) @ sol["rotation"].T + sol["mean"]).astype(Z.dtype, copy=False)

    def to_torch(self) -> AffineMap:
        """An nn.Module computing the same map on torch tensors."""
        sol = self._solve()
        return AffineMap(sol["mean"], sol["weight"])

    def to_faiss(self):
        """The same map as a faiss `LinearTransform` (y = A x + b with A = Wᵀ, b = −μW) for `IndexPreTransform`."""
        from sentflow.calibration.faiss_map import linear_transform

        return linear_transform(self)

    def _tensors(self) -> dict[str, torch.Tensor]:
        sol = self._solve()
        return {k: torch.from_numpy(v.copy(order="C")) for k, v in sol.items()}  # a copy: never a negative stride

    def _restore(self, tensors: dict[str, torch.Tensor], header: CalibrationHeader) -> None:
        d, k = header.dim_in, header.dim_out
        if k != (self.n_components or d):
            raise ValueError(f"dim_out {k} does not match n_components={self.n_components}")
        shapes = {"mean": (d,), "eigenvalues": (d,), "rotation": (d, d), "weight": (d, k)}
        found = {name: tuple(tensor.shape) for name, tensor in tensors.items()}
        if found != shapes:
            raise ValueError(f"tensor shapes {found} do not match a {d} -> {k} whitening")
        if any(tensor.dtype not in (torch.float32, torch.float64) for tensor in tensors.values()):
            raise ValueError("whitening tensors must be float32 or float64")
        self._solution = {name: tensors[name].numpy().astype(np.float64) for name in shapes}
        if (self._solution["eigenvalues"] < 0).any():
            raise ValueError("negative covariance eigenvalues")
        self.n_features_in_ = d
