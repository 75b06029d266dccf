"""Retrieval evaluation: encode a task once, calibrate on the corpus only, search faiss indexes, score with
pytrec_eval (nDCG@10, MRR@10, recall@1/10/100, x100) as BEIR and MTEB do.

Every index is searched at the k each metric reads: nDCG@10, MRR@10 and recall@1/10 score a search for 10
results (what a user asks for, and what sets an approximate index's budget), recall@100 a search for 100.

Every method is compared with cosine similarity (L2 normalisation after the calibration) unless `normalize=False`.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import partial

import numpy as np
from tqdm.auto import tqdm

from sentflow.calibration.factory import METHODS, make_calibrator
from sentflow.calibration.stats import as_matrix
from sentflow.errors import SentflowError
from sentflow.protocols import LinearMap
from sentflow.search.faiss_index import build_index, index_bytes, make_faiss_index
from sentflow.tasks.retrieval import RetrievalTask, load_retrieval_task

METRICS = ("ndcg@10", "mrr@10", "recall@1", "recall@10", "recall@100")
TOP_K = 100  # the deepest cutoff: recall@100 scores a search for 100 results
SCORED_K = 10  # nDCG@10, MRR@10, recall@1 and recall@10 score a search for 10 results
_TREC_MEASURES = {
    "ndcg@10": "ndcg_cut_10",
    "recall@1": "recall_1",
    "recall@10": "recall_10",
    "recall@100": "recall_100",
}


@dataclass(frozen=True)
class IndexResult:
    """Quality and cost of one faiss index over one calibration."""

    factory: str
    metrics: dict[str, float]
    index_bytes: int
    build_seconds: float
    qps: float
    k: int = SCORED_K


@dataclass(frozen=True)
class RetrievalRow:
    """One method at one dimension: the main index and, optionally, an approximate one."""

    method: str
    dim: int
    fit_seconds: float
    main: IndexResult
    approx: IndexResult | None = None

    def to_dict(self) -> dict:
        row = {"method": self.method, "dim": self.dim, **self.main.metrics, "k": self.main.k, "candidates": None}
        row.update(index_bytes=self.main.index_bytes, qps=self.main.qps)
        row.update(build_seconds=self.main.build_seconds, fit_seconds=self.fit_seconds, index=self.main.factory)
        if self.approx is not None:
            row.update({f"approx_{k}": v for k, v in asdict(self.approx).items() if k != "metrics"})
            row.update({f"approx_{k}": v for k, v in self.approx.metrics.items()})
        return row


@dataclass(frozen=True)
class CompactRow:
    """Quality and cost of one compact code (sentflow's quantizers, or a baseline's) over one calibration."""

    method: str
    dim: int
    quantize: str
    ram_bytes_per_doc: float
    disk_bytes_per_doc: float
    metrics: dict[str, float]
    qps: float
    build_seconds: float
    baseline: str | None = None  # e.g. st-ubinary-rescore, faiss-sq8; None for sentflow's own codes
    k: int = SCORED_K
    candidates: int | None = None  # stage 1's budget at k (None: a full scan, no stage 1)

    def to_dict(self) -> dict:
        """The row as `eval retrieval --json` prints it."""
        row = {"method": self.method, "dim": self.dim, "quantize": self.quantize, "baseline": self.baseline}
        row.update(ram_bytes_per_doc=self.ram_bytes_per_doc, disk_bytes_per_doc=self.disk_bytes_per_doc)
        row.update(self.metrics, k=self.k, candidates=self.candidates)
        return {**row, "qps": self.qps, "build_seconds": self.build_seconds}


@dataclass(frozen=True)
class RetrievalReport:
    """The rows of one evaluation and what they were measured on.

    Attributes:
        task: The task's name.
        model: The encoder's model.
        pooling: The encoder's pooling.
        n_queries: Queries scored.
        n_corpus: Documents searched.
        results: One row per method, dimension and index: metrics, index memory and queries/s.
        normalize: Whether vectors were L2-normalised after the calibration (cosine similarity).
        compact: One row per method, dimension and compact code (and baseline), when asked for.
    """

    task: str
    model: str
    pooling: str
    n_queries: int
    n_corpus: int
    results: tuple[RetrievalRow, ...]
    normalize: bool = True
    compact: tuple[CompactRow, ...] = ()

    def to_dict(self) -> dict:
        """The JSON of `eval retrieval --json`: float index rows, then compact-code rows (with `quantize`)."""
        head = {k: getattr(self, k) for k in ("task", "model", "pooling", "n_queries", "n_corpus")}
        rows = [row.to_dict() for row in self.results] + [row.to_dict() for row in self.compact]
        return {**head, "normalize": self.normalize, "results": rows}


def retrieval_metrics(qrels: dict[str, dict[str, int]], run: dict[str, dict[str, float]]) -> dict[str, float]:
    """nDCG@10, MRR@10 and recall@1/10/100 x100, averaged over every judged query (a query missing from `run`
    counts 0). `run` maps a query id to {doc id: score}, best first; MRR@10 reads its first 10 entries."""
    import pytrec_eval  # a core dependency (pytrec-eval-terrier)

    measures = {"ndcg_cut.10", "recall.1,10,100"}
    per_query = pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(run)
    top10 = {q: dict(list(docs.items())[:10]) for q, docs in run.items()}
    reciprocal = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(top10)
    scores = {name: [per_query.get(q, {}).get(measure, 0.0) for q in qrels] for name, measure in _TREC_MEASURES.items()}
    scores["mrr@10"] = [reciprocal.get(q, {}).get("recip_rank", 0.0) for q in qrels]
    result = {name: 100.0 * float(np.mean(scores[name])) for name in METRICS}
    if not all(np.isfinite(v) for v in result.values()):
        raise SentflowError(f"retrieval metrics are not finite: {result}")
    return result


def search_run(search, task: RetrievalTask, query_vectors: np.ndarray, k: int = TOP_K, repeats: int = 3):
    """(run, queries per second): the top-k documents of every query by `search(queries, k) -> (scores, rows)`,
    its own sentence excluded; the search is timed `repeats` times and the median is kept."""
    depth = min(k + (1 if task.exclude else 0), len(task.corpus_ids))
    times = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        scores, ids = search(query_vectors, depth)
        times.append(time.perf_counter() - start)
    run = {}
    for query, row_scores, row_ids in zip(task.query_ids, scores, ids, strict=True):
        skip = task.exclude.get(query)
        docs = ((task.corpus_ids[i], float(s)) for s, i in zip(row_scores, row_ids, strict=True) if i >= 0)
        run[query] = dict([(d, s) for d, s in docs if d != skip][:k])
    return run, len(query_vectors) / max(statistics.median(times), 1e-12)


def measure_search(search, task: RetrievalTask, query_vectors: np.ndarray, repeats: int = 3):
    """(metrics, queries per second at k = 10): every metric from a search for 10 results but recall@100, which
    scores a search for 100 (so an approximate index is measured at the budget a user's k gives it)."""
    top, qps = search_run(search, task, query_vectors, SCORED_K, repeats)
    deep, _ = search_run(search, task, query_vectors, TOP_K, 1)
    metrics = retrieval_metrics(task.qrels, top)
    metrics["recall@100"] = retrieval_metrics(task.qrels, deep)["recall@100"]
    return metrics, qps


def measure_index(calibration, corpus, queries, task: RetrievalTask, factory: str, normalize: bool, repeats: int):
    """Build one index over the corpus vectors, search the queries, and score the results.

    A linear calibration goes inside the faiss index; any other (a flow) transforms the vectors before indexing."""
    if calibration is not None and not isinstance(calibration, LinearMap):
        corpus, queries, calibration = calibration.transform(corpus), calibration.transform(queries), None
    start = time.perf_counter()
    index = build_index(calibration, corpus, factory, normalize=normalize)
    seconds = time.perf_counter() - start
    metrics, qps = measure_search(index.search, task, queries, repeats)
    return IndexResult(factory, metrics, index_bytes(index), seconds, qps)


def final_vectors(calibration, corpus: np.ndarray, queries: np.ndarray, normalize: bool):
    """The vectors exact search compares: calibrated, then L2-normalised when `normalize` (cosine)."""
    from sentflow.pipeline import l2_normalize

    if calibration is not None:
        corpus, queries = calibration.transform(corpus), calibration.transform(queries)
    corpus, queries = (np.ascontiguousarray(v, np.float32) for v in (corpus, queries))
    return (l2_normalize(corpus), l2_normalize(queries)) if normalize else (corpus, queries)


def measure_compact(
    method, corpus, queries, task, spec: str, rescore: int, repeats: int, candidates: int | None = None
) -> CompactRow:
    """Build sentflow's compact index `spec` over final corpus vectors and score it on the queries, stage 1
    keeping `candidates` (None: the default budget) for the int8 rescoring."""
    from sentflow.search.compact import CompactIndex

    start = time.perf_counter()
    index = CompactIndex.build(corpus, spec, rescore=rescore)
    seconds = time.perf_counter() - start
    metrics, qps = measure_search(partial(index.search, candidates=candidates), task, queries, repeats)
    budget = _budget(index, candidates)
    row = (index.quantize, index.ram_bytes_per_doc, index.disk_bytes_per_doc, metrics, qps, seconds)
    return CompactRow(method, corpus.shape[1], *row, candidates=budget)


def _budget(index, candidates: int | None) -> int | None:
    """The stage-1 budget a compact index uses at k = 10 (None: it scans every code or ranks by stage 1 alone)."""
    from sentflow.search.quantize import stage1_candidates

    if index.rescorer is None:
        return None
    return stage1_candidates(SCORED_K, candidates, len(index), index.rescore)


def measure_baseline(
    method, corpus, queries, task, name: str, rescore: int, repeats: int, candidates: int | None = None
) -> CompactRow | None:
    """A baseline's codes over the same final vectors (None where it cannot code this width, e.g. PQ48 of 100);
    one that rescores keeps the same stage-1 budget as sentflow's codes."""
    from sentflow.evaluation.quant_baselines import BASELINE_CODES, make_baseline

    start = time.perf_counter()
    try:
        baseline = make_baseline(name, corpus, rescore, candidates)
    except RuntimeError:  # faiss: the width does not split into this many sub-quantizers
        return None
    seconds = time.perf_counter() - start
    metrics, qps = measure_search(baseline.search, task, queries, repeats)
    budget = baseline.budget(SCORED_K)
    row = (BASELINE_CODES[name], baseline.ram_bytes_per_doc, 0.0, metrics, qps, seconds, name)
    return CompactRow(method, corpus.shape[1], *row, candidates=budget)


def _check_compact_options(
    quantize: Sequence[str], rescore: int, baselines: Sequence[str], candidates: int | None = None
) -> None:
    """Fail on a bad quantizer spec, rescore depth, candidate budget or baseline name before any encoding."""
    from sentflow.evaluation.quant_baselines import BASELINES
    from sentflow.search.quantize import make_quantizer, stage1_candidates

    for spec in quantize:
        make_quantizer(spec)
    if rescore < 0:
        raise SentflowError(f"rescore must be >= 0, got {rescore}")
    stage1_candidates(SCORED_K, candidates, SCORED_K)
    unknown = [name for name in baselines if name not in BASELINES]
    if unknown:
        raise SentflowError(f"unknown baselines {unknown}; choose from {', '.join(BASELINES)}")


def _check_options(methods: Sequence[str], dims: Sequence[int | None], factories: Sequence[str], size: int) -> None:
    """Fail on unknown methods, dims above the embedding size or bad factory strings before any encoding."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise SentflowError(f"unknown methods {unknown}; choose from {', '.join(METHODS)}")
    for dim in dims:
        if dim is not None and not 1 <= dim <= size:
            raise SentflowError(f"dims={dim} must be between 1 and the embedding size {size}")
        for factory in factories:
            make_faiss_index(factory, dim or size)


def evaluate_retrieval(
    encoder,
    task: str | os.PathLike | RetrievalTask,
    methods: Sequence[str] = ("none", "whitening", "pca"),
    dims: Sequence[int | None] = (None,),
    index: str = "Flat",
    approx_index: str | None = "HNSW32",
    split: str = "test",
    data_dir: str | os.PathLike | None = None,
    normalize: bool = True,
    repeats: int = 3,
    quantize: Sequence[str] = (),
    rescore: int = 4,
    baselines: Sequence[str] = (),
    candidates: int | None = None,
) -> RetrievalReport:
    """Retrieval quality and index cost of each method at each dimension (None = the full embedding size).

    `task` is `sts-b`, `sick-r` (with `data_dir`), a BEIR folder or a loaded RetrievalTask. Calibrations are fitted
    on the corpus vectors only. `none` is the uncalibrated baseline and `flow` BERT-flow, each one row at full size
    whatever `dims` says; `whitening` is BERT-whitening and `pca` centres and rotates only, both cut to each dim.
    `index` is the faiss factory whose results are scored; `approx_index` (None to skip) is a second index
    measured in the same run. `quantize` adds, per method and dimension, a row for each compact-search spec
    (`none`, `int8`, `binary`, `itq:128`, `rabitq`, ...; see `sentflow.search.quantize`) whose stage 1 keeps
    `candidates` for the int8 rescoring (None: the default, `stage1_candidates`), and `baselines` (names from
    `quant_baselines.BASELINES`) rows for sentence-transformers' and faiss's codes over the same vectors, those
    that rescore with the same budget. nDCG@10, MRR@10 and recall@1/10 score a search for 10 results, recall@100
    one for 100.

    Args:
        encoder: The encoder of the corpus and the queries.
        task: `sts-b`, `sick-r`, a BEIR folder, or a loaded `RetrievalTask`.
        methods: Calibrations: `none`, `whitening`, `pca`, `flow`.
        dims: Dimensions each cut method keeps (None: the full size).
        index: The faiss factory string of the scored index.
        approx_index: A second faiss factory measured in the same run (None: skip).
        split: The qrels file of a BEIR folder.
        data_dir: The folder holding `sick-r`.
        normalize: L2-normalise after the calibration (cosine similarity).
        repeats: Timed searches per index; queries/s is their median.
        quantize: Compact-search specs to add (see `make_quantizer`).
        rescore: Candidates per result that two-stage codes rescore by default at large k (see
            `stage1_candidates`).
        baselines: Names of sentence-transformers' and faiss's codes to add.
        candidates: Stage 1's budget for the int8 rescoring (None: the larger of `DEFAULT_CANDIDATES` and
            rescore x k).

    Returns:
        The rows (nDCG@10, MRR@10, recall@1/10/100, index memory and queries/s) and what they were measured on.
    """
    size = int(encoder.dim)
    factories = [index] + ([approx_index] if approx_index else [])
    _check_options(methods, dims, factories, size)
    _check_compact_options(quantize, rescore, baselines, candidates)
    if not isinstance(task, RetrievalTask):
        task = load_retrieval_task(task, split, data_dir)
    corpus = np.ascontiguousarray(as_matrix(encoder.encode(task.corpus_texts), "corpus embeddings"), np.float32)
    queries = np.ascontiguousarray(as_matrix(encoder.encode(task.query_texts), "query embeddings"), np.float32)
    full = [m for m in methods if m in ("none", "flow")]  # one row at full size, whatever `dims` says
    configs = [(m, size) for m in full]
    configs += [(m, d or size) for m in methods if m not in full for d in dict.fromkeys(d or size for d in dims)]
    rows: list[RetrievalRow] = []
    compact: list[CompactRow] = []
    for method, dim in tqdm(configs, desc="retrieval", unit="config", disable=len(configs) < 2):
        calibration, fit_seconds = None, 0.0
        if method != "none":
            start = time.perf_counter()
            calibration = make_calibrator(method, None if method == "flow" else dim).fit(corpus)
            fit_seconds = time.perf_counter() - start
        results = [measure_index(calibration, corpus, queries, task, f, normalize, repeats) for f in factories]
        rows.append(RetrievalRow(method, dim, fit_seconds, *results))
        if quantize or baselines:
            docs, asked = final_vectors(calibration, corpus, queries, normalize)
            budget = (rescore, repeats, candidates)
            compact += [measure_compact(method, docs, asked, task, spec, *budget) for spec in quantize]
            measured = (measure_baseline(method, docs, asked, task, name, *budget) for name in baselines)
            compact += [row for row in measured if row is not None]
    return RetrievalReport(
        task=task.name,
        model=str(getattr(encoder, "model_name", type(encoder).__name__)),
        pooling=str(getattr(encoder, "pooling", "")),
        n_queries=len(task.query_ids),
        n_corpus=len(task.corpus_ids),
        results=tuple(rows),
        normalize=normalize,
        compact=tuple(compact),
    )
