"""The command-line journey of docs/compact-search.md, each step its own `sentflow` process on real files:
`fit` a pipeline -> `encode` the corpus -> `index` it -> `search` the index -> `eval retrieval` on it.

The data are real and always present: a BEIR folder made from STS-B test pairs that ship with sentflow (a query is
a first sentence, the corpus every distinct second sentence, a pair scored >= 4 relevant). The oracles are
independent of the commands under test: `search` must return numpy's brute-force neighbours of the vectors `encode`
wrote, and `eval retrieval`'s nDCG@10 for `none` must equal nDCG@10 computed here from `encode`'s plain vectors.
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from journey_support import run_cli

from sentflow.tasks.sts import packaged_stsb_dir

pytestmark = pytest.mark.slow

MAX_LENGTH = "32"


@pytest.fixture(scope="module")
def beir(tmp_path_factory):
    """(work folder, corpus texts in file order, {query id: (query text, relevant doc ids)}) from 250 STS-B test
    pairs; the BEIR folder is work/beir, its texts one a line in work/docs.txt and work/queries.txt."""
    work = tmp_path_factory.mktemp("cli-journey")
    folder = work / "beir"
    folder.mkdir()
    with open(packaged_stsb_dir() / "sts-test.csv", encoding="utf-8") as fh:
        pairs = [row for row in csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE) if len(row) >= 7][:250]
    docs: dict[str, str] = {}
    queries: dict[str, tuple[str, set[str]]] = {}
    for row in pairs:
        doc = docs.setdefault(row[6], f"d{len(docs)}")
        if float(row[4]) >= 4.0:
            queries[f"q{len(queries)}"] = (row[5], {doc})
    texts = list(docs)
    with open(folder / "corpus.jsonl", "w", encoding="utf-8") as fh:
        fh.writelines(json.dumps({"_id": i, "title": "", "text": t}) + "\n" for t, i in docs.items())
    with open(folder / "queries.jsonl", "w", encoding="utf-8") as fh:
        fh.writelines(json.dumps({"_id": q, "text": t}) + "\n" for q, (t, _) in queries.items())
    (folder / "qrels").mkdir()
    lines = [f"{q}\t{d}\t1\n" for q, (_, relevant) in queries.items() for d in sorted(relevant)]
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(lines), encoding="utf-8")
    (work / "docs.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    (work / "queries.txt").write_text("\n".join(t for t, _ in queries.values()) + "\n", encoding="utf-8")
    stsb_train = (packaged_stsb_dir() / "sts-train.csv").read_text(encoding="utf-8").splitlines()[:600]
    (work / "train.txt").write_text("\n".join(line.split("\t")[5] for line in stsb_train) + "\n", encoding="utf-8")
    return work, texts, queries


def ndcg_at_10(scores: np.ndarray, doc_ids: list[str], relevant: list[set[str]]) -> float:
    """Mean binary nDCG@10 x100 of a (queries, docs) score matrix: the textbook formula."""
    values = []
    for row, judged in zip(scores, relevant, strict=True):
        top = [doc_ids[i] for i in np.argsort(-row, kind="stable")[:10]]
        dcg = sum(1 / np.log2(rank + 2) for rank, d in enumerate(top) if d in judged)
        ideal = sum(1 / np.log2(rank + 2) for rank in range(min(len(judged), 10)))
        values.append(dcg / ideal)
    return 100 * float(np.mean(values))


def test_fit_encode_index_search_eval(beir):
    work, texts, queries = beir
    run_cli("fit", "--data", "train.txt", "--pooling", "cls", "--max-length", MAX_LENGTH, "--dim", "128",
            "--normalize", "--out", "pipe", cwd=work)  # fmt: skip
    for name in ("docs", "queries"):
        run_cli("encode", f"{name}.txt", "--pipeline", "pipe", "--out", f"{name}.npy", cwd=work)
    run_cli("index", "beir", "--pipeline", "pipe", "--quantize", "none", "--out", "index", cwd=work)
    found = json.loads(run_cli("search", "index", "--queries", "queries.txt", "--k", "3", "--json", cwd=work).stdout)

    docs, query_vectors = np.load(work / "docs.npy"), np.load(work / "queries.npy")
    assert docs.shape == (len(texts), 128) and query_vectors.shape == (len(queries), 128)
    exact = query_vectors.astype(np.float64) @ docs.T.astype(np.float64)
    assert [result["query"] for result in found] == [text for text, _ in queries.values()]
    for row, result in zip(exact, found, strict=True):
        got = [hit["score"] for hit in result["hits"]]
        np.testing.assert_allclose(got, -np.sort(-row)[:3], atol=1e-4)
        np.testing.assert_allclose(got, [row[int(hit["id"][1:])] for hit in result["hits"]], atol=1e-4)

    run_cli("encode", "docs.txt", "--max-length", MAX_LENGTH, "--out", "plain-docs.npy", cwd=work)
    run_cli("encode", "queries.txt", "--max-length", MAX_LENGTH, "--out", "plain-queries.npy", cwd=work)
    evaluated = run_cli("eval", "retrieval", "beir", "--methods", "none", "--max-length", MAX_LENGTH,
                        "--approx-index", "", "--json", cwd=work)  # fmt: skip
    report = json.loads(evaluated.stdout)
    assert (report["n_queries"], report["n_corpus"]) == (len(queries), len(texts))
    plain_docs, plain_queries = np.load(work / "plain-docs.npy"), np.load(work / "plain-queries.npy")
    plain_docs /= np.linalg.norm(plain_docs, axis=1, keepdims=True)
    plain_queries /= np.linalg.norm(plain_queries, axis=1, keepdims=True)
    doc_ids = [f"d{i}" for i in range(len(texts))]
    oracle = ndcg_at_10(plain_queries @ plain_docs.T, doc_ids, [relevant for _, relevant in queries.values()])
    assert report["results"][0]["ndcg@10"] == pytest.approx(oracle, abs=0.05)
