"""Chroma with sentflow's embedding function (embedded PersistentClient, cosine HNSW, Chroma's defaults): recall@10
against sentflow's exact search on the STS-B corpus, SciFact nDCG@10 against `sentflow eval retrieval` (faiss
Flat) measured in the same run, and what the stored vectors and the persistent directory cost at 384 dims (no
calibration), PCA-256 and PCA-128 (centring + rotation, cut; fitted on each corpus, L2-normalised).

Run: python eval/chroma_check.py BEIR_DIR [--json] [--smoke]
(--smoke: a slice of BEIR_DIR, or of STS-B duplicate retrieval when BEIR_DIR is absent, and a 150-line STS-B
slice; prints, writes nothing).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import cast

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))
import chromadb  # noqa: E402
import numpy as np  # noqa: E402
from chromadb.api.collection_configuration import CreateCollectionConfiguration  # noqa: E402
from chromadb.api.types import Embeddable, EmbeddingFunction  # noqa: E402
from report import RESULTS, beir_slice, publish, sts_slice, table  # noqa: E402

import sentflow  # noqa: E402
from sentflow.evaluation.retrieval import retrieval_metrics  # noqa: E402
from sentflow.files.io import write_atomic  # noqa: E402
from sentflow.integrations.chroma import ChromaEmbeddingFunction  # noqa: E402
from sentflow.search.faiss_index import search_exact  # noqa: E402
from sentflow.tasks.retrieval import load_retrieval_task  # noqa: E402

CONFIGS = {"none-384": None, "pca-256": 256, "pca-128": 128}
TOP_K = 100
COSINE: CreateCollectionConfiguration = {"hnsw": {"space": "cosine"}}


def pipeline_for(encoder, corpus_vectors: np.ndarray, dim: int | None) -> sentflow.Pipeline:
    """No calibration, or PCA cut to `dim` fitted on the corpus; L2-normalised (cosine), as `eval retrieval`."""
    calibration = None if dim is None else sentflow.Whitening(n_components=dim, power=0.0).fit(corpus_vectors)
    return sentflow.Pipeline(encoder, calibration, normalize=True)


def fill(path: Path, function: ChromaEmbeddingFunction, texts: list[str]):
    """A cosine collection of `texts` whose vectors the function computes in one call (so sentflow's cache of the
    whole list is used), added in Chroma's largest batches; only ids and vectors are stored."""
    client = chromadb.PersistentClient(path=str(path))
    # chroma types its parameter for any embeddable; a text function (its own included) is one for documents only
    text_function = cast("EmbeddingFunction[Embeddable]", function)
    collection = client.create_collection("corpus", embedding_function=text_function, configuration=COSINE)
    vectors = function(texts)
    step = client.get_max_batch_size()
    for start in range(0, len(texts), step):
        ids = [str(i) for i in range(start, min(start + step, len(texts)))]
        collection.add(ids=ids, embeddings=vectors[start : start + step])
    return collection


def query(collection, texts: list[str], k: int) -> list[list[tuple[int, float]]]:
    """(row, cosine) of the top k of each query text, embedded by the collection's function."""
    out = collection.query(query_texts=texts, n_results=k, include=["distances"])
    rows = zip(out["ids"], out["distances"], strict=True)
    return [[(int(i), 1.0 - d) for i, d in zip(ids, dists, strict=True)] for ids, dists in rows]


def directory_bytes(path: Path) -> int:
    """Total size of the files under `path`."""
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def stsb_recall(encoder, tmp: Path, stsb_dir: str | None = None) -> dict[str, float]:
    """recall@10 of Chroma against exact search over every distinct STS-B sentence, for each configuration
    (`stsb_dir` None: the packaged STS-B)."""
    task = load_retrieval_task("sts-b", "test", stsb_dir)
    corpus = encoder.encode(task.corpus_texts)
    recall = {}
    for name, dim in CONFIGS.items():
        pipeline = pipeline_for(encoder, corpus, dim)
        collection = fill(tmp / f"stsb-{name}", ChromaEmbeddingFunction(pipeline), task.corpus_texts)
        found = query(collection, task.query_texts, 10)
        _, exact = search_exact(pipeline.transform(encoder.encode(task.query_texts)), pipeline.transform(corpus), 10)
        recall[name] = float(np.mean([len({i for i, _ in f} & set(e)) / 10 for f, e in zip(found, exact, strict=True)]))
    return recall


def scifact_rows(encoder, task, tmp: Path) -> dict[str, dict]:
    """nDCG@10 through Chroma and through sentflow's evaluator, and the storage, for each configuration."""
    corpus = encoder.encode(task.corpus_texts)
    report = sentflow.evaluate_retrieval(encoder, task, ("none", "pca"), dims=(256, 128), approx_index=None, repeats=1)
    sentflow_ndcg = {f"{r.method}-{r.dim}": r.main.metrics["ndcg@10"] for r in report.results}
    rows = {}
    for name, dim in CONFIGS.items():
        pipeline = pipeline_for(encoder, corpus, dim)
        path = tmp / f"scifact-{name}"
        collection = fill(path, ChromaEmbeddingFunction(pipeline), task.corpus_texts)
        found = query(collection, task.query_texts, TOP_K)
        run = {q: {task.corpus_ids[i]: s for i, s in hits} for q, hits in zip(task.query_ids, found, strict=True)}
        stored = np.asarray(collection.get(ids=["0"], include=["embeddings"])["embeddings"])
        size = directory_bytes(path)
        rows[name] = {
            "dim": int(pipeline.dim),
            "chroma_ndcg@10": retrieval_metrics(task.qrels, run)["ndcg@10"],
            "sentflow_ndcg@10": sentflow_ndcg[name],
            "stored_dim": int(stored.shape[1]),
            "bytes_per_vector": int(stored.shape[1] * np.dtype(np.float32).itemsize),  # Chroma keeps float32
            "directory_bytes": size,
            "directory_bytes_per_vector": size / len(task.corpus_ids),
            "n_vectors": len(task.corpus_ids),
        }
    return rows


def write_results(result: dict, beir_dir: Path, smoke: bool = False) -> None:
    base = result["scifact"]["none-384"]
    rows = []
    for name, r in result["scifact"].items():
        rows.append([
            name, r["dim"], f"{r['chroma_ndcg@10']:.2f}", f"{r['sentflow_ndcg@10']:.2f}",
            f"{r['chroma_ndcg@10'] - r['sentflow_ndcg@10']:+.2f}", f"{result['stsb_recall@10'][name]:.4f}",
            r["bytes_per_vector"], f"{r['bytes_per_vector'] / base['bytes_per_vector']:.2f}",
            f"{r['directory_bytes'] / 2**20:.2f}", f"{r['directory_bytes_per_vector']:.0f}",
            f"{r['directory_bytes'] / base['directory_bytes']:.2f}",
        ])
    header = ["config", "dim", "Chroma nDCG@10", "sentflow nDCG@10 (Flat)", "Δ", "STS-B recall@10 vs exact",
              "float32 bytes/vector", "ratio", "persistent dir MiB", "dir bytes/vector", "ratio"]
    intro = (
        f"all-MiniLM-L6-v2 (last-avg, max_length 256). BEIR {beir_dir.name} test ({base['n_vectors']} documents) "
        "and the STS-B duplicate-retrieval corpus (every distinct STS-B sentence, its queries), each stored in an "
        "embedded `chromadb.PersistentClient` collection (cosine HNSW, Chroma's default M=16, ef 100) through "
        "`ChromaEmbeddingFunction`. PCA = `Whitening(n_components=dim, power=0)` fitted on the corpus, then L2 "
        "normalisation, as `sentflow eval retrieval --methods pca`. nDCG@10 x100 by pytrec_eval on Chroma's top "
        f"{TOP_K}; recall@10 = overlap of Chroma's top 10 with `search_exact`'s. bytes/vector: the stored "
        "vector's length (checked on what Chroma returns) x 4, as Chroma keeps float32; persistent dir: every file "
        "of the collection's directory (ids and vectors only, no documents), measured in the same run."
    )
    publish("chroma_check", "Chroma with a sentflow embedding function", [intro, table(header, rows)], smoke)
    if smoke:
        return
    text = json.dumps(result, indent=1) + "\n"
    write_atomic(RESULTS / "chroma_check.json", lambda tmp: tmp.write_text(text, encoding="utf-8"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("beir_dir", type=Path, nargs="?", help="a BEIR folder (optional with --smoke)")
    parser.add_argument("--json", action="store_true", help="Print the figures as JSON only; write nothing.")
    parser.add_argument("--smoke", action="store_true", help="Slices of the data, temp cache; nothing is written.")
    args = parser.parse_args()
    if args.beir_dir is None and not args.smoke:
        parser.error("BEIR_DIR is required (optional only with --smoke)")
    with tempfile.TemporaryDirectory() as tmp:
        encoder = sentflow.Encoder(show_progress=False, cache=str(Path(tmp, "cache")) if args.smoke else True)
        stsb_dir = str(sts_slice(Path(tmp), 150)) if args.smoke else None
        beir = args.beir_dir
        if args.smoke and beir is not None and (beir / "corpus.jsonl").is_file():
            beir = beir_slice(beir, Path(tmp, "beir"))
        if beir is not None and (beir / "corpus.jsonl").is_file() or not args.smoke:
            task = sentflow.load_beir(beir)
        else:  # --smoke without the BEIR data: the packaged STS-B duplicate retrieval stands in
            beir, task = Path("sts-b"), load_retrieval_task("sts-b", "test", stsb_dir)
        recall = stsb_recall(encoder, Path(tmp), stsb_dir)
        result = {"stsb_recall@10": recall, "scifact": scifact_rows(encoder, task, Path(tmp))}
    if args.json:
        print(json.dumps(result, allow_nan=False))
    else:
        write_results(result, beir, args.smoke)


if __name__ == "__main__":
    main()
