"""Compact search: quantized codes of a corpus' final vectors, searched in one or two stages.

- Sign codes (`binary`, `itq:BITS`, `pca:BITS`): stage 1 searches the bit codes, held in RAM, with a faiss binary
  index (`IndexBinaryFlat`, or `IndexBinaryHNSW` for large corpora) and keeps `rescore × k` candidates; stage 2
  rescores them with the float query against int8 codes read from a memory-mapped file on disk.
- Scalar codes (`int8`, `int4`): a full scan, float query · decoded code (asymmetric), in chunks.
- `none`: exact inner products on the float vectors.
- With `lists=N` (any code): an inverted file (`sentflow.search.ivf`): k-means cells, residual codes grouped by
  cell, and a search that scores only the `probes` cells nearest each query before the int8 rescoring.

The vectors given are the final ones exact float search would use (calibrated and, for cosine, L2-normalised);
row numbers index the build order, `ids` name them. A saved index is a directory: `index.json` (schema-checked,
with a sha256 for every file), the quantizers (safetensors), the codes (`.npy`, never pickled) and the ids.
"""

from __future__ import annotations

import json
import os
import tempfile
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from sentflow.calibration.stats import as_matrix
from sentflow.errors import SentflowError
from sentflow.extras import require
from sentflow.files.io import atomic_directory, file_hash
from sentflow.files.lines import read_json_lines, write_json_lines
from sentflow.files.mapped import gather, map_rows
from sentflow.files.npy import read_header
from sentflow.files.schemas import COMPACT_FORMAT, CompactManifest, parse, parse_json
from sentflow.search.ivf import InvertedLists, assign, default_probes, train_centroids
from sentflow.search.quantize import (
    Quantizer,
    ScalarQuantizer,
    SignQuantizer,
    load_quantizer,
    make_quantizer,
    stage1_candidates,
)

MANIFEST = "index.json"
CHUNK_ROWS = 65_536
RESCORE_BLOCK = 2_048  # candidate codes decoded at once by the rescoring stage (3 MiB at 384 dims: in cache)
FIT_ROWS = 200_000  # a streamed build fits its quantizers on the first rows, at most this many
HNSW_M = 32
_MAX_MANIFEST_BYTES = 1 << 20


class CompactIndex:
    """A corpus as compact codes, searched with float queries (see the module docstring for the modes).

    Build one with `CompactIndex.build(vectors, quantize=...)` and reopen a saved one with `CompactIndex.load`;
    the constructor takes parts that are already fitted.

    Args:
        quantizer: The fitted quantizer of the codes searched first.
        codes: The corpus' codes, one row per document.
        ids: A name per row (None: row numbers), or a function that reads them when first asked for.
        rescore: Sign codes: candidates kept per result for the second stage (0: the Hamming ranking is final).
        rescorer: Sign codes: the fitted int8 quantizer of the second stage.
        rescore_codes: Sign codes: the corpus' int8 codes (a memory map when loaded).
        hnsw: Search the sign codes with faiss's `IndexBinaryHNSW` instead of `IndexBinaryFlat`.
        lists: The inverted lists the codes are grouped by (then `codes` are residual codes in slot order).
    """

    def __init__(
        self,
        quantizer: Quantizer,
        codes: np.ndarray,
        ids: Sequence[str] | Callable[[], list[str]] | None = None,
        rescore: int = 4,
        rescorer: Quantizer | None = None,
        rescore_codes: np.ndarray | None = None,
        hnsw: bool = False,
        lists: InvertedLists | None = None,
    ) -> None:
        self.quantizer = quantizer
        self.codes = codes
        self._read_ids = ids if callable(ids) else None  # a saved index reads its ids when first asked
        self._ids = list(ids) if ids is not None and not callable(ids) else None
        if self._ids is not None and len(self._ids) != len(codes):
            raise SentflowError(f"{len(self._ids)} ids for {len(codes)} coded vectors")
        self.rescore = rescore
        if rescorer is not None and not isinstance(rescorer, ScalarQuantizer):
            raise SentflowError(f"rescoring needs scalar codes, not {rescorer.spec}")
        self.rescorer = rescorer
        self.rescore_codes = rescore_codes
        self.hnsw = hnsw
        if lists is not None and (hnsw or len(lists.order) != len(codes)):
            raise SentflowError(f"inverted lists of {len(lists.order)} rows for {len(codes)} codes (and no HNSW)")
        self.lists = lists
        hamming = isinstance(quantizer, SignQuantizer) and lists is None and hnsw
        self._faiss = self._binary_index() if hamming else None

    # --- building --------------------------------------------------------------------------------------------

    @classmethod
    def build(
        cls,
        vectors,
        quantize: str = "binary",
        rescore: int = 4,
        ids: Sequence[str] | None = None,
        hnsw: bool = False,
        seed: int = 0,
        show_progress: bool | None = None,
        lists: int | None = None,
    ) -> CompactIndex:
        """Fit the codes on `vectors` (n, d) and code them. `rescore` (sign codes only) is how many candidates per
        result stage 1 keeps for stage 2 (0: no rescoring, the Hamming ranking is final); `lists` groups the codes
        into that many k-means cells (an inverted file, searched with `probes`)."""
        vectors = as_matrix(vectors, "vectors")
        chunks = _row_chunks(vectors)
        return cls.build_chunks(chunks, vectors, quantize, rescore, ids, hnsw, seed, show_progress, lists=lists)

    @classmethod
    def build_chunks(
        cls,
        chunks: Iterable[np.ndarray],
        fit_rows: np.ndarray,
        quantize: str = "binary",
        rescore: int = 4,
        ids: Sequence[str] | None = None,
        hnsw: bool = False,
        seed: int = 0,
        show_progress: bool | None = None,
        total: int | None = None,
        lists: int | None = None,
        spill: str | os.PathLike | None = None,
    ) -> CompactIndex:
        """Build from row chunks read one at a time (memory: the codes, not the vectors); the quantizers (and the
        k-means cells of `lists`) are fitted on `fit_rows` (for a corpus larger than memory, its first rows).
        `spill` is a directory where the int8 rescoring codes are written as they are made, so that RAM holds only
        the stage-1 codes (they are then memory-mapped from there until saved)."""
        if rescore < 0:
            raise SentflowError(f"rescore must be >= 0, got {rescore}")
        fit_rows = as_matrix(fit_rows, "vectors")
        if not len(fit_rows):
            raise SentflowError("the corpus is empty: there is nothing to index")
        if lists is not None and hnsw:
            raise SentflowError("lists and hnsw are two ways to search a large corpus: choose one")
        centroids = train_centroids(fit_rows, lists, seed) if lists is not None else None
        fit_codes = fit_rows if centroids is None else fit_rows - centroids[assign(centroids, fit_rows)]
        quantizer = make_quantizer(quantize, seed).fit(fit_codes)
        two_stage = _coarse(quantizer) and rescore > 0
        rescorer = ScalarQuantizer(8).fit(fit_rows) if two_stage else None
        codes, cells = [], []
        sink = _CodeSink(spill, quantizer.dim) if rescorer is not None else None
        bar = tqdm(total=total, unit="doc", desc=f"index {quantizer.spec}", disable=_quiet(show_progress, total))
        for chunk in chunks:
            chunk = quantizer.check_width(chunk, "vectors")
            if centroids is not None:
                cells.append(assign(centroids, chunk))
                codes.append(quantizer.encode_around(chunk, centroids[cells[-1]]))
            else:
                codes.append(quantizer.encode(chunk))
            if sink is not None and rescorer is not None:
                sink.add(rescorer.encode(chunk))
            bar.update(len(chunk))
        bar.close()
        all_codes = _stack(codes, quantizer.code_bytes)
        codes.clear()  # held once: at 10M rows the chunks, their stack and the reordered copy are 0.5 GB each
        if not len(all_codes):
            raise SentflowError("the corpus is empty: there is nothing to index")
        inverted = None
        if centroids is not None:
            inverted = InvertedLists.group(centroids, np.concatenate(cells))
            all_codes = all_codes[inverted.order]
        rescore_codes = sink.close() if sink is not None else None
        return cls(quantizer, all_codes, ids, rescore, rescorer, rescore_codes, hnsw, inverted)

    def _binary_index(self):
        """The faiss index over the bit codes; afterwards `codes` is a view of faiss' own copy (held once)."""
        faiss = require("faiss", "faiss")
        bits = self.codes.shape[1] * 8
        index = faiss.IndexBinaryHNSW(bits, HNSW_M) if self.hnsw else faiss.IndexBinaryFlat(bits)
        index.add(np.ascontiguousarray(self.codes))
        storage = faiss.downcast_IndexBinary(index.storage) if self.hnsw else index
        held = faiss.rev_swig_ptr(storage.xb.data(), storage.ntotal * storage.code_size)
        self.codes = held.reshape(storage.ntotal, storage.code_size)  # valid while the index lives (it is ours)
        return index

    # --- searching -------------------------------------------------------------------------------------------

    @property
    def ids(self) -> list[str]:
        """Document ids by row ("0", "1", ... unless given); a loaded index reads them on first use, so searching
        by row numbers keeps only the codes in memory."""
        if self._ids is None and self._read_ids is not None:
            self._ids = self._read_ids()
        return self._ids if self._ids is not None else [str(i) for i in range(len(self))]

    @property
    def dim(self) -> int:
        """Width of the vectors (and queries) the index codes."""
        return self.quantizer.dim

    @property
    def quantize(self) -> str:
        """The spec of the codes held in RAM."""
        return self.quantizer.spec

    def __len__(self) -> int:
        return len(self.codes)

    def search(
        self, queries, k: int = 10, *, candidates: int | None = None, probes: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The k best documents per query: (scores float32 (nq, k'), rows int64 (nq, k')), best first, with
        k' = min(k, len(index)). Scores are inner products (two-stage: with the int8 codes; stage 1 alone: the
        codes' estimate, or 1 - 2·Hamming/bits for sign codes searched by Hamming distance).

        Args:
            queries: Float query vectors (nq, dim), made like the indexed vectors.
            k: Results per query.
            candidates: Two-stage codes: how many candidates stage 1 passes to the int8 rescoring (default:
                the larger of `DEFAULT_CANDIDATES` and rescore × k; at least k).
            probes: An index built with lists: how many cells each query searches (default
                `sentflow.search.ivf.default_probes(lists)`; all of them make stage 1 exhaustive).
        """
        k = _whole(k, "k")
        queries = np.ascontiguousarray(self.quantizer.check_width(queries, "queries"), dtype=np.float32)
        k = min(k, len(self))
        if probes is not None and self.lists is None:
            raise SentflowError("probes needs an index built with lists")
        depth = self._depth(k, candidates) if _coarse(self.quantizer) else k
        if self.lists is not None:
            probes = default_probes(self.lists.lists) if probes is None else _whole(probes, "probes")
            scores, rows = self.lists.search(queries, self.codes, self.quantizer, probes, depth)
        elif not _coarse(self.quantizer):
            return _top_k_scan(queries, self.codes, self.quantizer.scores, k)
        elif self._faiss is not None:
            scores, rows = self._search_hamming(queries, depth)
        else:
            scores, rows = _top_k_scan(queries, self.codes, self.quantizer.scores, depth)
        if self.rescorer is None or self.rescore_codes is None:
            return scores[:, :k], rows[:, :k]
        return _rescore(queries, rows, self.rescore_codes, self.rescorer, k)

    def _depth(self, k: int, candidates: int | None) -> int:
        """How many candidates stage 1 keeps (`stage1_candidates`: the default budget unless given)."""
        if self.rescorer is None:
            return k
        return stage1_candidates(k, candidates, len(self), self.rescore)

    def _search_hamming(self, queries: np.ndarray, depth: int) -> tuple[np.ndarray, np.ndarray]:
        """Stage 1 by Hamming distance on faiss' binary index: (1 - 2·Hamming/bits, rows)."""
        assert isinstance(self.quantizer, SignQuantizer) and self._faiss is not None
        if self.hnsw:
            self._faiss.hnsw.efSearch = max(2 * depth, 64)  # HNSW's recall needs a search list longer than depth
        distances, rows = self._faiss.search(self.quantizer.encode(queries), depth)
        return (1.0 - 2.0 * distances / self.quantizer.n_bits).astype(np.float32), rows.astype(np.int64)

    def to_faiss(self, calibration=None, normalize: bool = True):
        """Stage 1 as one faiss index over raw vectors: `IndexPreTransform` of the calibration's
        `LinearTransform`, an L2 normalisation and the codes' centring and rotation (a `LinearTransform` to BITS),
        in front of an `IndexLSH` that takes the signs and searches by Hamming distance (sentflow's own stage 1
        scores the float query against the codes instead). Add the raw corpus vectors to it and search raw queries;
        the int8 rescoring stage stays in sentflow. Only sign codes export: faiss's
        scalar quantizers (`build_index(..., "SQ8")`) fit ranges of their own."""
        faiss = require("faiss", "faiss")
        if not isinstance(self.quantizer, SignQuantizer):
            raise SentflowError(
                f"{self.quantize} codes do not export to faiss (its SQ8/SQ4 fit their own ranges): use "
                "sentflow.build_index(pipeline, vectors, 'SQ8'), or sign codes (binary, itq:BITS)"
            )
        from sentflow.search.faiss_index import affine_transform, linear_transform

        chain = []
        if calibration is not None:
            chain.append(linear_transform(calibration))
        if normalize:
            chain.append(faiss.NormalizationTransform(self.dim, 2.0))
        if self.quantizer.rotation != "none":
            projection = self.quantizer.projection_
            chain.append(affine_transform(projection, -self.quantizer.mean_ @ projection))
        index = faiss.IndexPreTransform(faiss.IndexLSH(self.quantizer.n_bits, self.quantizer.n_bits, False, False))
        for transform in reversed(chain):
            index.prepend_transform(transform)
        return index

    # --- cost --------------------------------------------------------------------------------------------------

    @property
    def ram_bytes_per_doc(self) -> float:
        """Bytes per document held in RAM: the stage-1 or full-scan codes (an HNSW graph's links included)."""
        links = 0.0
        if self.hnsw and self._faiss is not None:
            links = 2 * HNSW_M * 4  # level-0 neighbour ids, int32 (upper levels add about 1/M of that)
        order = self.lists.order.itemsize if self.lists is not None else 0  # the row of each slot
        return float(self.codes.shape[1]) + links + order

    @property
    def disk_bytes_per_doc(self) -> float:
        """Bytes per document read from disk at search time: the memory-mapped rescoring codes (0 without)."""
        return float(self.rescore_codes.shape[1]) if self.rescore_codes is not None else 0.0

    # --- files -------------------------------------------------------------------------------------------------

    def save(
        self,
        directory: str | os.PathLike,
        pipeline: dict | None = None,
        snippets: Sequence[str] | None = None,
    ) -> Path:
        """Write the index directory atomically; `pipeline` records what made the vectors (checked by the CLI),
        `snippets` a short text per document for display."""
        if snippets is not None and len(snippets) != len(self):
            raise SentflowError(f"{len(snippets)} snippets for {len(self)} documents")
        with atomic_directory(directory, marker=MANIFEST) as staging:
            files = {"quantizer": "quantizer.safetensors", "codes": "codes.npy", "ids": "ids.jsonl"}
            self.quantizer.save(staging / files["quantizer"])
            np.save(staging / files["codes"], self.codes, allow_pickle=False)
            write_json_lines(staging / files["ids"], self.ids)
            if self.rescorer is not None:
                files.update(rescorer="rescore.safetensors", rescore_codes="rescore.npy")
                self.rescorer.save(staging / files["rescorer"])
                _save_codes(staging / files["rescore_codes"], self.rescore_codes)
            if self.lists is not None:
                files.update(centroids="centroids.npy", list_offsets="list_offsets.npy", list_order="list_order.npy")
                np.save(staging / files["centroids"], self.lists.centroids, allow_pickle=False)
                np.save(staging / files["list_offsets"], self.lists.offsets, allow_pickle=False)
                np.save(staging / files["list_order"], self.lists.order.astype(np.int64), allow_pickle=False)
            if snippets is not None:
                files["snippets"] = "snippets.jsonl"
                write_json_lines(staging / files["snippets"], snippets)
            manifest = {
                "format": COMPACT_FORMAT,
                "quantize": self.quantize,
                "rescore": self.rescore,
                "hnsw": self.hnsw,
                "lists": self.lists.lists if self.lists is not None else None,
                "rows": len(self),
                "dim": self.dim,
                "pipeline": pipeline,
                "files": {
                    key: {"name": name, "sha256": file_hash(staging / name).hexdigest()} for key, name in files.items()
                },
            }
            parse(CompactManifest, manifest, Path(directory) / MANIFEST)  # what is written must load again
            (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        return Path(directory)

    @classmethod
    def load(cls, directory: str | os.PathLike) -> CompactIndex:
        """Read an index directory written by `save`; every file is checked against its recorded sha256 and shape."""
        index, _ = load_compact_index(directory)
        return index


def load_compact_index(directory: str | os.PathLike) -> tuple[CompactIndex, CompactManifest]:
    """(the index, its manifest) of a directory written by `CompactIndex.save`."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    paths = {key: _checked_file(directory, entry.name, entry.sha256) for key, entry in manifest.files.paths().items()}
    quantizer = load_quantizer(paths["quantizer"])
    if quantizer.spec != manifest.quantize or quantizer.dim != manifest.dim:
        raise SentflowError(
            f"{paths['quantizer']}: holds {quantizer.spec} codes of {quantizer.dim} dims, not the manifest's"
        )
    codes = _load_codes(paths["codes"], manifest.rows, quantizer.code_bytes, mmap=False)
    rescorer, fine = None, None
    if (_coarse(quantizer) and manifest.rescore > 0) != ("rescorer" in paths):
        raise SentflowError(
            f"{directory / MANIFEST}: {manifest.quantize} codes with rescore {manifest.rescore} "
            f"{'need' if 'rescorer' not in paths else 'take no'} rescorer and rescore_codes files"
        )
    if "rescorer" in paths:
        rescorer = load_quantizer(paths["rescorer"])
        if not isinstance(rescorer, ScalarQuantizer) or rescorer.dim != manifest.dim:
            raise SentflowError(f"{paths['rescorer']}: not int8 rescoring codes of {manifest.dim} dims")
        fine = _load_codes(paths["rescore_codes"], manifest.rows, manifest.dim, mmap=True)
    lists = _load_lists(paths, manifest) if manifest.lists is not None else None
    read_ids = lambda: read_json_lines(paths["ids"], manifest.rows)  # noqa: E731
    return CompactIndex(quantizer, codes, read_ids, manifest.rescore, rescorer, fine, manifest.hnsw, lists), manifest


def _load_lists(paths: dict[str, Path], manifest: CompactManifest) -> InvertedLists:
    """The inverted lists of a saved index, checked against its manifest."""
    lists = manifest.lists or 0
    missing = {"centroids", "list_offsets", "list_order"} - set(paths)
    if missing:
        raise SentflowError(f"index.json: {lists} lists but no {', '.join(sorted(missing))} file")
    centroids = _load_array(paths["centroids"], np.float32, (lists, manifest.dim))
    offsets = _load_array(paths["list_offsets"], np.int64, (lists + 1,))
    order = _load_array(paths["list_order"], np.int64, (manifest.rows,))
    return InvertedLists(centroids, offsets, order)


def read_manifest(directory: Path) -> CompactManifest:
    """index.json, validated (format, bounds, file names)."""
    path = directory / MANIFEST
    if not path.is_file():
        raise SentflowError(f"{directory}: not a sentflow index directory (no {MANIFEST})")
    if path.stat().st_size > _MAX_MANIFEST_BYTES:
        raise SentflowError(f"{path}: too large for an index manifest")
    return parse_json(CompactManifest, path.read_bytes(), path)


def read_snippets(directory: str | os.PathLike, manifest: CompactManifest) -> list[str] | None:
    """The stored snippets of an index directory, if it has them."""
    entry = manifest.files.snippets
    if entry is None:
        return None
    return read_json_lines(_checked_file(Path(directory), entry.name, entry.sha256), manifest.rows)


# --- helpers ---------------------------------------------------------------------------------------------------


def _quiet(show_progress: bool | None, total: int | None) -> bool:
    return not show_progress if show_progress is not None else (total or 0) < 50_000


def _row_chunks(vectors: np.ndarray, rows: int = CHUNK_ROWS) -> Iterator[np.ndarray]:
    for start in range(0, len(vectors), rows):
        yield vectors[start : start + rows]


def _stack(parts: list[np.ndarray], width: int) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros((0, width), np.uint8)


def _coarse(quantizer: Quantizer) -> bool:
    """Whether the codes are a first stage (sign codes and their kin) rather than a full scan (float, scalar)."""
    return quantizer.kind not in ("none", "scalar")


def _whole(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise SentflowError(f"{name} must be a whole number >= 1, got {value!r}")
    return int(value)


def _top_k_scan(queries: np.ndarray, codes: np.ndarray, score: Callable, k: int):
    """Exact top-k of score(queries, codes), scanning the codes in chunks (float32 arithmetic)."""
    best_scores = np.full((len(queries), 0), -np.inf, np.float32)
    best_rows = np.zeros((len(queries), 0), np.int64)
    for start in range(0, len(codes), CHUNK_ROWS):
        scores = np.asarray(score(queries, codes[start : start + CHUNK_ROWS]), dtype=np.float32)
        rows = np.broadcast_to(np.arange(start, start + scores.shape[1]), scores.shape)
        best_scores = np.concatenate([best_scores, scores], axis=1)
        best_rows = np.concatenate([best_rows, rows], axis=1)
        keep = _best(best_scores, best_rows, k)
        best_scores = np.take_along_axis(best_scores, keep, axis=1)
        best_rows = np.take_along_axis(best_rows, keep, axis=1)
    return best_scores.astype(np.float32), best_rows


def _best(scores: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the k best per row, best first (ties to the lower row number among those kept)."""
    if scores.shape[1] > k:
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        order = np.lexsort((np.take_along_axis(rows, part, 1), -np.take_along_axis(scores, part, 1)), axis=1)
        return np.take_along_axis(part, order, axis=1)
    return np.lexsort((rows, -scores), axis=1)


def _rescore(queries: np.ndarray, candidates: np.ndarray, fine: np.ndarray, rescorer: ScalarQuantizer, k: int):
    """Stage 2: float query · int8-decoded candidate, the k best per query, best first (ties to the lower row).

    q · (low + code * step) = q · low + (q * step) · code, so the codes are never decoded to float vectors. Queries
    go in blocks of `RESCORE_BLOCK` candidates; each block reads its distinct rows once, in file order (the
    memory-mapped reads go forward; rows of a map larger than `MAPPED_BUDGET` are read with positional reads)."""
    weights = (queries * rescorer.step_).astype(np.float32)
    offsets = (queries @ rescorer.low_).astype(np.float32)
    step = max(1, RESCORE_BLOCK // max(candidates.shape[1], 1))
    scores = np.full((len(queries), k), -np.inf, np.float32)
    rows = np.full((len(queries), k), -1, np.int64)
    for start in range(0, len(queries), step):
        found = candidates[start : start + step]
        distinct, where = np.unique(np.maximum(found, 0), return_inverse=True)
        codes = gather(fine, distinct)[where.reshape(found.shape)].astype(np.float32)  # (queries, candidates, dim)
        exact = np.matmul(codes, weights[start : start + step, :, None])[:, :, 0] + offsets[start : start + step, None]
        exact = np.where(found >= 0, exact, -np.inf).astype(np.float32)
        keep = _best(exact, found, k)
        best, named = np.take_along_axis(exact, keep, 1), np.take_along_axis(found, keep, 1)
        scores[start : start + step, : keep.shape[1]] = best
        rows[start : start + step, : keep.shape[1]] = np.where(np.isfinite(best), named, -1)
    return scores, rows


def _checked_file(directory: Path, name: str, sha256: str) -> Path:
    path = directory / name
    if not path.is_file():
        raise SentflowError(f"{path}: missing from the index directory")
    if file_hash(path).hexdigest() != sha256:
        raise SentflowError(f"{path}: checksum mismatch: the file is damaged or was replaced; rebuild the index")
    return path


def _load_array(path: Path, dtype, shape: tuple[int, ...]) -> np.ndarray:
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise SentflowError(f"{path}: not a readable .npy file ({exc})") from None
    if array.dtype != dtype or array.shape != shape:
        raise SentflowError(f"{path}: holds {array.dtype} {array.shape}, the index needs {np.dtype(dtype)} {shape}")
    return array


class _CodeSink:
    """Rescoring codes as they are made: in RAM, or appended to a file in `spill` (then memory-mapped)."""

    def __init__(self, spill: str | os.PathLike | None, width: int) -> None:
        self.width, self.rows, self.parts = width, 0, []  # type: ignore[var-annotated]
        self.file, self.name = None, ""
        if spill is not None:
            handle, self.name = tempfile.mkstemp(dir=spill, suffix=".codes")
            self.file = os.fdopen(handle, "wb")

    def add(self, codes: np.ndarray) -> None:
        """Keep one chunk's codes."""
        if self.file is None:
            self.parts.append(codes)
        else:
            self.file.write(np.ascontiguousarray(codes).tobytes())
        self.rows += len(codes)

    def close(self) -> np.ndarray:
        """All the codes: an array, or a read-only memory map of the spill file (deleted with the map)."""
        if self.file is None:
            return _stack(self.parts, self.width)
        self.file.close()
        if not self.rows:
            os.unlink(self.name)
            return np.zeros((0, self.width), np.uint8)
        codes = map_rows(self.name, np.uint8, (self.rows, self.width), 0)
        weakref.finalize(codes, Path(self.name).unlink, missing_ok=True)
        return codes


def _save_codes(path: Path, codes) -> None:
    """np.save, except that a memory-mapped array is copied from its file (its pages are never all mapped in)."""
    base = getattr(codes, "filename", None)
    if not isinstance(codes, np.memmap) or base is None or not codes.flags.c_contiguous:
        np.save(path, np.asarray(codes), allow_pickle=False)
        return
    with open(path, "wb") as out, open(base, "rb") as source:
        np.lib.format.write_array_header_1_0(out, np.lib.format.header_data_from_array_1_0(codes))
        source.seek(codes.offset)
        _copy_bytes(source, out, codes.nbytes)


def _copy_bytes(source, out, size: int, block: int = 1 << 24) -> None:
    while size > 0:
        data = source.read(min(block, size))
        if not data:
            raise SentflowError(f"{source.name}: shorter than the codes it should hold")
        out.write(data)
        size -= len(data)


def _load_codes(path: Path, rows: int, width: int, mmap: bool) -> np.ndarray:
    """uint8 (rows, width) codes of a .npy file: read into RAM, or memory-mapped with the file held open."""
    shape, fortran, dtype, offset = read_header(path)
    if dtype != np.uint8 or shape != (rows, width) or fortran:
        raise SentflowError(f"{path}: holds {dtype} {shape}, the index needs uint8 ({rows}, {width}) in C order")
    if mmap:
        return map_rows(path, dtype, shape, offset)
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise SentflowError(f"{path}: not a readable .npy file ({exc})") from None

