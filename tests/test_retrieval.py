"""Retrieval tasks and evaluation: metrics against a hand-computed case, BEIR folders (good and bad), STS-B
duplicates against the raw file, and evaluate_retrieval against exact numpy search."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from sentflow import SentflowError, Whitening
from sentflow.evaluation.retrieval import METRICS, evaluate_retrieval, retrieval_metrics
from sentflow.search.faiss_index import search_exact
from sentflow.tasks.retrieval import duplicate_task, load_beir, load_retrieval_task
from sentflow.tasks.sts import StsPairs, packaged_stsb_dir

REQUIRED_ROW_KEYS = {"method", "dim", *METRICS, "index_bytes", "qps"}


def test_metrics_equal_a_hand_computed_case():
    qrels = {"q1": {"d1": 1, "d3": 1}, "q2": {"d5": 2}, "q3": {"d11": 1}, "q4": {"d1": 1}}
    run = {
        "q1": {"d2": 0.9, "d1": 0.8, "d4": 0.7, "d3": 0.6},  # relevant at ranks 2 and 4
        "q2": {"d5": 0.5, "d1": 0.4},  # relevant (grade 2) at rank 1
        "q3": {**{f"d{i}": 1.0 - i / 20 for i in range(10)}, "d11": 0.05},  # relevant at rank 11
    }  # q4 is judged but has no results: it counts 0
    ndcg_q1 = (1 / math.log2(3) + 1 / math.log2(5)) / (1 + 1 / math.log2(3))
    want = {
        "ndcg@10": 100 * (ndcg_q1 + 1 + 0 + 0) / 4,
        "mrr@10": 100 * (1 / 2 + 1 + 0 + 0) / 4,
        "recall@1": 100 * (0 + 1 + 0 + 0) / 4,
        "recall@10": 100 * (1 + 1 + 0 + 0) / 4,
        "recall@100": 100 * (1 + 1 + 1 + 0) / 4,
    }
    got = retrieval_metrics(qrels, run)
    assert got == pytest.approx(want, abs=1e-9)


def write_beir(folder: Path, corpus=None, queries=None, qrels=None) -> Path:
    """A small BEIR folder; each part may be replaced by raw text (None keeps the good default)."""
    docs = [{"_id": "d1", "title": "Cats", "text": "cats purr"}, {"_id": "d2", "text": "dogs bark"}]
    asks = [{"_id": "q1", "text": "what purrs"}, {"_id": "q2", "text": "what barks"}, {"_id": "q3", "text": "x"}]
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    defaults = {
        "corpus.jsonl": "\n".join(json.dumps(d) for d in docs) + "\n",
        "queries.jsonl": "\n".join(json.dumps(q) for q in asks) + "\n",
        "qrels/test.tsv": "query-id\tcorpus-id\tscore\r\nq1\td1\t1\r\nq2\td2\t1\r\n",
    }
    given = {"corpus.jsonl": corpus, "queries.jsonl": queries, "qrels/test.tsv": qrels}
    for name, text in defaults.items():
        (folder / name).write_text(text if given[name] is None else given[name], encoding="utf-8")
    return folder


def test_beir_folder_is_read_with_titles_and_only_judged_queries(tmp_path):
    task = load_retrieval_task(write_beir(tmp_path / "mini"))
    assert task.name == "mini"
    assert task.corpus_ids == ["d1", "d2"] and task.corpus_texts == ["Cats cats purr", "dogs bark"]
    assert task.query_ids == ["q1", "q2"] and task.query_texts == ["what purrs", "what barks"]
    assert task.qrels == {"q1": {"d1": 1}, "q2": {"d2": 1}} and task.exclude == {}


def test_split_picks_another_qrels_file(tmp_path):
    folder = write_beir(tmp_path)
    (folder / "qrels" / "dev.tsv").write_text("q3\td2\t1\n", encoding="utf-8")
    assert load_beir(folder, "dev").qrels == {"q3": {"d2": 1}}


@pytest.mark.parametrize(
    ("parts", "message"),
    [
        ({"corpus": ""}, r"corpus.jsonl: the corpus is empty"),
        ({"corpus": '{"_id": "d1", "text": "a"}\nnot json\n'}, r"corpus.jsonl, line 2: Invalid JSON"),
        ({"corpus": '{"text": "a"}\n'}, r"corpus.jsonl, line 1: field '_id': Field required"),
        (
            {"corpus": '{"_id": "d1", "text": 3}\n'},
            r"line 1: field 'text': Input should be a valid string",
        ),
        ({"corpus": '{"_id": "d1", "text": "a"}\n{"_id": "d1", "text": "b"}\n'}, r"line 2: duplicate _id 'd1'"),
        ({"queries": '{"_id": "q1", "text": "a"}\n{"_id": "q1", "text": "a"}\n'}, r"queries.jsonl, line 2: dup"),
        ({"qrels": "q1\td1\t1\nq9\td1\t1\n"}, r"test.tsv, line 2: query id 'q9' is not in queries.jsonl"),
        ({"qrels": "q1\td9\t1\n"}, r"test.tsv, line 1: corpus id 'd9' is not in corpus.jsonl"),
        ({"qrels": "q1\td1\tyes\n"}, r"test.tsv, line 1: score: 'yes': Input should be a valid integer"),
        ({"qrels": "q1 d1 1\n"}, r"test.tsv, line 1: expected query-id, corpus-id, score"),
        ({"qrels": "q1\td1\t" + "9" * 5000 + "\n"}, r"test.tsv, line 1: score: '9999"),
        ({"corpus": '{"_id": "' + "d" * 2000 + '", "text": "a"}\n'}, r"field '_id': String should have at most 1024"),
        ({"corpus": '{"_id": "d1", "text": "a", "title": ["t"]}\n'}, r"line 1: field 'title'"),
        ({"qrels": "q1\td1\t1\nq1\td1\t1\n"}, r"test.tsv, line 2: duplicate judgement"),
        ({"qrels": "query-id\tcorpus-id\tscore\nq1\td1\t0\n"}, r"test.tsv: no relevant"),
    ],
)
def test_bad_beir_folders_are_one_line_errors_naming_file_and_line(tmp_path, parts, message):
    with pytest.raises(SentflowError, match=message) as info:
        load_retrieval_task(write_beir(tmp_path, **parts))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("missing", ["corpus.jsonl", "queries.jsonl", "qrels/test.tsv"])
def test_a_missing_beir_file_is_named(tmp_path, missing):
    (write_beir(tmp_path) / missing).unlink()
    with pytest.raises(SentflowError, match=f"{missing}: no such file"):
        load_retrieval_task(tmp_path)


def test_unknown_task_names_the_choices():
    wanted = "nope: no such file or directory, and not a task name.*give an STS task or a BEIR folder"
    with pytest.raises(SentflowError, match=wanted):
        load_retrieval_task("nope")


def test_stsb_duplicates_follow_the_raw_file():
    raw = {}
    for split in ("train", "dev", "test"):
        lines = (packaged_stsb_dir() / f"sts-{split}.csv").read_text(encoding="utf-8").splitlines()
        raw[split] = [line.split("\t") for line in lines if line.strip()]
    distinct = {s for rows in raw.values() for f in rows for s in f[5:7]}
    wanted = {(f[5], f[6]) for f in raw["test"] if float(f[4]) >= 4.0 and f[5] != f[6]}
    task = load_retrieval_task("sts-b")
    assert sorted(task.corpus_texts) == sorted(distinct) and len(task.corpus_ids) == len(distinct)
    text_of = dict(zip(task.corpus_ids, task.corpus_texts, strict=True))
    got = {(q, text_of[d]) for qid, q in zip(task.query_ids, task.query_texts, strict=True) for d in task.qrels[qid]}
    assert got == wanted
    assert all(text_of[task.exclude[qid]] == q for qid, q in zip(task.query_ids, task.query_texts, strict=True))


class LookupEncoder:
    """Deterministic vectors per text (anisotropic, with a shared mean), counting encode calls."""

    model_name, pooling, dim = "lookup", "none", 12

    def __init__(self, vectors: dict[str, np.ndarray]) -> None:
        self.vectors, self.calls = vectors, 0

    def encode(self, texts):
        self.calls += 1
        return np.stack([self.vectors[t] for t in texts]).astype(np.float32)


def random_task_folder(tmp_path: Path, n_docs: int = 300, n_queries: int = 40, seed: int = 0):
    """A BEIR folder of random texts plus an encoder whose query vectors lie near their relevant document."""
    rng = np.random.default_rng(seed)
    mixing = rng.standard_normal((12, 12)) * np.logspace(0, -1, 12)[:, None]
    docs = rng.standard_normal((n_docs, 12)) @ mixing + 10 * rng.random(12)
    relevant = rng.choice(n_docs, n_queries, replace=False)
    queries = docs[relevant] + 0.3 * rng.standard_normal((n_queries, 12)) @ mixing
    corpus = "".join(json.dumps({"_id": f"d{i}", "text": f"doc {i}"}) + "\n" for i in range(n_docs))
    asks = "".join(json.dumps({"_id": f"q{i}", "text": f"query {i}"}) + "\n" for i in range(n_queries))
    qrels = "".join(f"q{i}\td{r}\t1\n" for i, r in enumerate(relevant))
    write_beir(tmp_path, corpus, asks, qrels)
    vectors = {f"doc {i}": v for i, v in enumerate(docs)} | {f"query {i}": v for i, v in enumerate(queries)}
    return tmp_path, LookupEncoder(vectors), docs, queries, relevant


def test_evaluation_rows_equal_exact_numpy_search_on_transformed_vectors(tmp_path):
    folder, encoder, docs, queries, relevant = random_task_folder(tmp_path)
    report = evaluate_retrieval(encoder, folder, dims=(12, 4), approx_index=None, repeats=1)
    assert [(r.method, r.dim) for r in report.results] == [
        ("none", 12),
        ("whitening", 12),
        ("whitening", 4),
        ("pca", 12),
        ("pca", 4),
    ]
    qrels = {f"q{i}": {f"d{r}": 1} for i, r in enumerate(relevant)}
    for row in report.results:
        if row.method == "none":
            q, d = queries, docs
        else:
            whitening = Whitening(n_components=row.dim, power=0.5 if row.method == "whitening" else 0.0).fit(docs)
            q, d = whitening.transform(queries), whitening.transform(docs)
        scores, ids = search_exact(
            q / np.linalg.norm(q, axis=1, keepdims=True), d / np.linalg.norm(d, axis=1, keepdims=True), 100
        )
        run = {
            f"q{i}": {f"d{j}": float(s) for s, j in zip(srow, irow, strict=True)}
            for i, (srow, irow) in enumerate(zip(scores, ids, strict=True))
        }
        assert row.main.metrics == pytest.approx(retrieval_metrics(qrels, run), abs=1e-6)
    assert encoder.calls == 2  # corpus and queries, encoded once for every method


def test_report_json_has_the_required_keys(tmp_path):
    folder, encoder, *_ = random_task_folder(tmp_path, n_docs=200)
    data = evaluate_retrieval(encoder, folder, methods=("none", "pca"), dims=(6,), repeats=1).to_dict()
    assert {"task", "model", "pooling", "n_queries", "n_corpus", "results"} <= set(data)
    assert (data["n_queries"], data["n_corpus"]) == (40, 200)
    for row in data["results"]:
        assert set(row) >= REQUIRED_ROW_KEYS and row["approx_factory"] == "HNSW32"
        assert all(0 <= row[m] <= 100 for m in METRICS) and row["index_bytes"] > 0 and row["qps"] > 0
    assert json.loads(json.dumps(data)) == data


def test_a_query_never_finds_its_own_sentence_in_duplicate_tasks():
    n = 30
    test = StsPairs([f"a{i}" for i in range(n)], [f"b{i}" for i in range(n)], np.r_[np.full(10, 4.5), np.ones(n - 10)])
    other = StsPairs(["c0", "c1"], ["c2", "a0"], np.array([5.0, 5.0]))
    task = duplicate_task("toy", {"train": other, "dev": other, "test": test}, "test")
    assert task.query_texts == [f"a{i}" for i in range(10)] and len(task.corpus_texts) == 2 * n + 3
    rng = np.random.default_rng(0)
    vectors = {t: rng.standard_normal(8) for t in task.corpus_texts}
    vectors |= {f"b{i}": vectors[f"a{i}"] + 0.01 * rng.standard_normal(8) for i in range(n)}
    encoder = LookupEncoder(vectors)
    encoder.dim = 8
    report = evaluate_retrieval(encoder, task, methods=("none",), approx_index=None, repeats=1)
    # each query's nearest corpus vector is its own sentence: only the exclusion lets the duplicate come first
    assert report.results[0].main.metrics["recall@1"] == 100.0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"dims": (13,)}, "dims=13 must be between 1 and the embedding size 12"),
        ({"methods": ("glow",)}, "unknown methods \\[.glow.\\]"),
        ({"index": "IVF4,PQ5"}, "faiss cannot build index 'IVF4,PQ5'"),
    ],
)
def test_bad_options_fail_before_any_encoding(tmp_path, options, message):
    folder, encoder, *_ = random_task_folder(tmp_path)
    with pytest.raises(SentflowError, match=message):
        evaluate_retrieval(encoder, folder, **options)
    assert encoder.calls == 0


def test_real_encoder_end_to_end_on_stsb_slice(tiny_bert_dir, stsb_slice_dir):
    from sentflow import Encoder

    encoder = Encoder(str(tiny_bert_dir), cache=False, device="cpu")
    report = evaluate_retrieval(encoder, "sts-b", dims=(16,), data_dir=stsb_slice_dir, approx_index=None, repeats=1)
    assert report.n_corpus == len({s for s in load_retrieval_task("sts-b", data_dir=stsb_slice_dir).corpus_texts})
    assert [(r.method, r.dim) for r in report.results] == [("none", 32), ("whitening", 16), ("pca", 16)]


def test_sick_r_duplicates_come_from_its_data_dir(tmp_path):
    lines = {
        "SICK_train.txt": ["1\tA dog runs\tA cat sits\t1.5\tNEUTRAL"],
        "SICK_trial.txt": ["pair_ID\tsentence_A\tsentence_B\trelatedness_score\tentailment_judgment"],
        "SICK_test_annotated.txt": ["7\tA man plays\tA man is playing\t4.6\tENTAILMENT", "8\tA b\tC d\t4.0\tX"],
    }
    lines["SICK_trial.txt"].append("3\tKids swim\tChildren swim\t3.9\tNEUTRAL")
    for name, rows in lines.items():
        (tmp_path / name).write_text("\n".join(rows) + "\n", encoding="utf-8")
    task = load_retrieval_task("sick-r", data_dir=tmp_path)
    assert len(task.corpus_texts) == 8 and task.query_texts == ["A man plays", "A b"]
    text_of = dict(zip(task.corpus_ids, task.corpus_texts, strict=True))
    assert [[text_of[d] for d in task.qrels[q]] for q in task.query_ids] == [["A man is playing"], ["C d"]]


def test_ndcg_scores_a_search_for_10_results_and_recall_at_100_one_for_100(tmp_path):
    from sentflow.evaluation.retrieval import measure_search

    folder, _, docs, queries, relevant = random_task_folder(tmp_path)
    task = load_retrieval_task(folder)
    asked: list[int] = []

    def search(q, k):  # exact search that records the k it was asked for
        asked.append(k)
        return search_exact(q, docs, k)

    metrics, qps = measure_search(search, task, queries, repeats=2)
    assert asked == [10, 10, 100] and qps > 0
    qrels = {f"q{i}": {f"d{r}": 1} for i, r in enumerate(relevant)}
    runs = {}
    for k in (10, 100):
        scores, ids = search_exact(queries, docs, k)
        runs[k] = {
            f"q{i}": {f"d{j}": float(s) for s, j in zip(srow, irow, strict=True)}
            for i, (srow, irow) in enumerate(zip(scores, ids, strict=True))
        }
    expected = retrieval_metrics(qrels, runs[10]) | {"recall@100": retrieval_metrics(qrels, runs[100])["recall@100"]}
    assert metrics == pytest.approx(expected, abs=1e-9)


def test_compact_rows_carry_k_and_the_budget_and_every_candidate_rescored_is_the_int8_scan(tmp_path):
    folder, encoder, *_ = random_task_folder(tmp_path, n_docs=300)
    options = {"methods": ("none",), "approx_index": None, "repeats": 1, "quantize": ("int8", "rabitq:8", "binary")}
    everything = evaluate_retrieval(encoder, folder, **options, candidates=300).to_dict()["results"]
    rows = {r.get("quantize"): r for r in everything if "quantize" in r}
    assert rows["int8"]["candidates"] is None and rows["rabitq:8"]["candidates"] == 300
    assert all(r["k"] == 10 for r in everything)
    for spec in ("rabitq:8", "binary"):  # stage 1 keeps every document: the int8 rescoring decides alone
        assert {m: rows[spec][m] for m in METRICS} == pytest.approx({m: rows["int8"][m] for m in METRICS}, abs=1e-9)
    few = evaluate_retrieval(encoder, folder, **options, candidates=12).to_dict()["results"]
    assert [r["candidates"] for r in few if "quantize" in r] == [None, 12, 12]
    default = evaluate_retrieval(encoder, folder, **options).to_dict()["results"]
    assert [r["candidates"] for r in default if "quantize" in r] == [None, 100, 100]


def test_a_bad_candidate_budget_fails_before_any_encoding(tmp_path):
    folder, encoder, *_ = random_task_folder(tmp_path)
    with pytest.raises(SentflowError, match="candidates must be a whole number >= 1, got 0"):
        evaluate_retrieval(encoder, folder, quantize=("rabitq",), candidates=0)
    assert encoder.calls == 0


def test_faiss_rabitq_baselines_rescore_the_budget_and_report_their_bytes():
    from sentflow.evaluation.quant_baselines import make_baseline

    rng = np.random.default_rng(0)
    docs = rng.standard_normal((400, 32)).astype(np.float32)
    docs /= np.linalg.norm(docs, axis=1, keepdims=True)
    queries = docs[:20] + 0.05 * rng.standard_normal((20, 32)).astype(np.float32)
    exact = np.argsort(-(queries @ docs.T), axis=1)[:, :10]
    plain = make_baseline("faiss-rabitq", docs)
    refined = make_baseline("faiss-rabitq-sq8", docs, candidates=400)
    assert (plain.ram_bytes_per_doc, refined.ram_bytes_per_doc) == (4 + 8, 4 + 8 + 32)
    assert (plain.budget(10), refined.budget(10), make_baseline("faiss-rabitq-sq8", docs).budget(10)) == (
        None,
        400,
        100,
    )
    _, rows = refined.search(queries, 10)  # every document rescored by SQ8: the exact top 10, up to SQ8's error
    overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(rows, exact, strict=True)])
    _, plain_rows = plain.search(queries, 10)
    plain_overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(plain_rows, exact, strict=True)])
    assert overlap >= 0.95 and overlap > plain_overlap
    assert (
        make_baseline("faiss-rabitq4", docs).ram_bytes_per_doc > make_baseline("faiss-rabitq2", docs).ram_bytes_per_doc
    )
