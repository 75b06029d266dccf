"""MTEB, Chroma and LangChain integrations, checked with the real packages against sentflow's own evaluators and
exact search; `import sentflow` imports none of them; a missing extra is one line naming the install command."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import SENTENCES

import sentflow
from sentflow.data_root import data_path
from sentflow.errors import SentflowError
from sentflow.search.faiss_index import search_exact

os.environ["HF_HUB_OFFLINE"] = "1"  # nothing in this file may download
ROOT = Path(__file__).resolve().parents[1]
SCIFACT = data_path("beir", "scifact")
COSINE = {"hnsw": {"space": "cosine"}}
PACKAGES = {"mteb": "mteb", "chroma": "chromadb", "langchain": "langchain_core"}


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_import_sentflow_imports_no_integration_package():
    out = _run(
        "import sys, sentflow, sentflow.integrations\n"
        f"print([m for m in {list(PACKAGES.values())} if m in sys.modules])"
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_missing_extra_is_one_line_naming_the_install_command():
    code = (
        "import sys\n"
        f"for extra, package in {PACKAGES!r}.items():\n"
        "    sys.modules[package] = None  # as if not installed\n"
        "    try:\n"
        "        __import__('sentflow.integrations.' + extra)\n"
        "    except Exception as exc:\n"
        "        print(type(exc).__name__, exc)\n"
    )
    out = _run(code)
    lines = out.stdout.strip().splitlines()
    assert lines == [
        "SentflowError mteb is not installed; install it with: python3 -m pip install 'sentflow[mteb]'",
        "SentflowError chromadb is not installed; install it with: python3 -m pip install 'sentflow[chroma]'",
        "SentflowError langchain-core is not installed; install it with: python3 -m pip install 'sentflow[langchain]'",
    ]


@pytest.fixture(scope="module")
def tiny_pipeline(tiny_bert_dir, stsb_slice_dir) -> sentflow.Pipeline:
    """The tiny BERT with a 8-d whitening fitted on STS-B slice sentences, L2-normalised."""
    encoder = sentflow.Encoder(str(tiny_bert_dir), show_progress=False)
    splits = ("train", "dev", "test")
    sentences = [s for split in splits for s in sentflow.load_sts("sts-b", split, stsb_slice_dir).sentences]
    return sentflow.Pipeline(encoder, sentflow.Whitening(n_components=8).fit(encoder.encode(sentences)), True)


@pytest.fixture(scope="module")
def tiny_pipeline_dir(tiny_pipeline, tmp_path_factory) -> Path:
    """The tiny pipeline saved as a pipeline directory."""
    return tiny_pipeline.save(tmp_path_factory.mktemp("pipe") / "tiny").resolve()


@pytest.fixture(scope="module")
def tiny_beir(tmp_path_factory) -> Path:
    """A BEIR folder of tiny-vocabulary documents (some with titles) and graded qrels."""
    folder = tmp_path_factory.mktemp("beir") / "tinybeir"
    (folder / "qrels").mkdir(parents=True)
    docs = [*SENTENCES, "the woman is playing soccer", "a boy and his dog on the street", "people are eating"]
    corpus = [{"_id": f"d{i}", "title": "a man" if i % 3 == 0 else "", "text": t} for i, t in enumerate(docs)]
    texts = ["man playing guitar", "dog on a street", "cat eating"]
    queries = [{"_id": f"q{i}", "text": t} for i, t in enumerate(texts)]
    qrels = ["query-id\tcorpus-id\tscore", "q0\td0\t2", "q0\td5\t1", "q1\td6\t1", "q1\td1\t1", "q2\td2\t1", "q2\td7\t2"]
    (folder / "corpus.jsonl").write_text("".join(json.dumps(r) + "\n" for r in corpus), encoding="utf-8")
    (folder / "queries.jsonl").write_text("".join(json.dumps(r) + "\n" for r in queries), encoding="utf-8")
    (folder / "qrels" / "test.tsv").write_text("\n".join(qrels) + "\n", encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def minilm_corpus():
    """A PCA-128 pipeline of all-MiniLM-L6-v2 (fitted on them) and every distinct sentence of the STS-B test split
    (2,552; eval/chroma_check.py runs the whole 15,487-sentence STS-B corpus)."""
    sentences = sorted(set(sentflow.load_sts("sts-b", "test").sentences))
    encoder = sentflow.Encoder(show_progress=False)
    pca = sentflow.Whitening(n_components=128, power=0.0).fit(encoder.encode(sentences))
    return sentflow.Pipeline(encoder, pca, normalize=True), sentences


# --- MTEB ---------------------------------------------------------------------------------------------------------


def test_mteb_model_follows_the_encoder_protocol(tiny_pipeline):
    from mteb.models.models_protocols import EncoderProtocol

    from sentflow.integrations.mteb import MtebModel

    model = MtebModel(tiny_pipeline)
    assert isinstance(model, EncoderProtocol)
    meta = model.mteb_model_meta
    assert meta.embed_dim == 8 and meta.similarity_fn_name.value == "cosine"
    assert meta.name == f"sentflow/{Path(tiny_pipeline.encoder.model_name).name}-whitening-8"
    batches = [{"text": SENTENCES[:2]}, {"text": SENTENCES[2:]}]
    np.testing.assert_allclose(model.encode(batches), tiny_pipeline.encode(SENTENCES), atol=1e-6)
    with pytest.raises(SentflowError, match="organisation/model"):
        MtebModel(tiny_pipeline, name="no-slash")
    with pytest.raises(SentflowError, match="Pipeline or Encoder"):
        MtebModel(object())


@pytest.mark.slow
def test_mteb_sts_task_gives_sentflows_spearman(minilm_corpus, stsb_slice_dir):
    from sentflow.integrations import mteb as sentflow_mteb

    pipeline = minilm_corpus[0]  # real vectors: the tiny BERT's cosines tie, and float32 vs float64 breaks ties
    pairs = sentflow.load_sts("sts-b", "test", stsb_slice_dir)
    expected = sentflow.evaluate_sts(pipeline.encode(pairs.sentences1), pipeline.encode(pairs.sentences2), pairs.scores)
    scores = sentflow_mteb.evaluate(pipeline, [sentflow_mteb.stsb_task("test", stsb_slice_dir)])
    assert scores["STSBenchmark"] == pytest.approx(expected["spearman"], abs=1e-6)


@pytest.mark.slow
def test_mteb_beir_task_gives_sentflows_ndcg(minilm_corpus, tiny_beir):
    from sentflow.integrations import mteb as sentflow_mteb

    encoder = minilm_corpus[0].encoder  # real vectors: the tiny BERT's scores tie, and libraries break ties apart
    report = sentflow.evaluate_retrieval(encoder, tiny_beir, methods=("none",), approx_index=None, repeats=1)
    scores = sentflow_mteb.evaluate(sentflow.Pipeline(encoder), [sentflow_mteb.beir_task(tiny_beir, name="Tiny")])
    assert scores["Tiny"] == pytest.approx(report.results[0].main.metrics["ndcg@10"], abs=1e-3)  # mteb rounds to 1e-5


def test_mteb_beir_task_reports_bad_folders(tmp_path):
    from sentflow.integrations.mteb import beir_task

    with pytest.raises(SentflowError, match="corpus.jsonl"):
        beir_task(tmp_path)


@pytest.mark.slow
@pytest.mark.skipif(not SCIFACT.is_dir(), reason=f"needs the SciFact folder {SCIFACT} (SENTFLOW_DATA)")
def test_mteb_check_smoke_agrees_with_sentflow():
    out = subprocess.run(
        [sys.executable, "eval/mteb_check.py", str(SCIFACT), "--smoke", "--json"],
        capture_output=True, text=True, cwd=ROOT, timeout=600,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout)
    for method in ("none", "whitening"):
        figures = result[method]
        assert figures["mteb_ndcg@10"] == pytest.approx(figures["sentflow_ndcg@10"], abs=0.01)
        assert figures["mteb_stsb_spearman"] == pytest.approx(figures["sentflow_stsb_spearman"], abs=0.01)
        assert figures["agree"] is True
    assert result["none"]["sentflow_stsb_spearman"] != result["whitening"]["sentflow_stsb_spearman"]  # it whitened


# --- Chroma -------------------------------------------------------------------------------------------------------


def test_chroma_collection_stores_the_pipelines_cut_vectors(tiny_pipeline, tiny_pipeline_dir, tmp_path):
    import chromadb

    from sentflow.integrations.chroma import ChromaEmbeddingFunction

    client = chromadb.PersistentClient(path=str(tmp_path / "db"))
    function = ChromaEmbeddingFunction(tiny_pipeline_dir)
    collection = client.create_collection("tiny", embedding_function=function, configuration=COSINE)
    ids = [str(i) for i in range(len(SENTENCES))]
    collection.add(ids=ids, documents=SENTENCES)
    stored = collection.get(ids=ids, include=["embeddings"])["embeddings"]
    np.testing.assert_allclose(np.asarray(stored), tiny_pipeline.encode(SENTENCES), atol=1e-6)
    assert np.asarray(stored).shape == (len(SENTENCES), 8)
    # a new client rebuilds the function from the saved pipeline directory recorded in the collection
    again = chromadb.PersistentClient(path=str(tmp_path / "db")).get_collection("tiny")
    assert again.configuration_json["embedding_function"]["config"] == {"pipeline": str(tiny_pipeline_dir)}
    rebuilt = again.query(query_texts=SENTENCES, n_results=3)
    given = collection.query(query_texts=SENTENCES, n_results=3)
    assert rebuilt["ids"] == given["ids"]
    np.testing.assert_allclose(rebuilt["distances"], given["distances"], atol=1e-6)
    np.testing.assert_allclose(np.asarray(given["distances"])[:, 0], 0.0, atol=1e-5)  # each text finds its own vector


def test_chroma_function_refuses_what_is_not_a_pipeline():
    from sentflow.integrations.chroma import ChromaEmbeddingFunction

    with pytest.raises(SentflowError, match="Pipeline or its directory"):
        ChromaEmbeddingFunction(42)
    with pytest.raises(SentflowError, match="not saved to a directory"):
        ChromaEmbeddingFunction.build_from_config({"pipeline": None})


def _recall_at_10(found: list[list[int]], exact_ids: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(e)) / len(e) for f, e in zip(found, exact_ids, strict=True)]))


@pytest.mark.slow
def test_chroma_recall_against_exact_search(minilm_corpus, tmp_path):
    import chromadb

    from sentflow.integrations.chroma import ChromaEmbeddingFunction

    pipeline, sentences = minilm_corpus
    client = chromadb.PersistentClient(path=str(tmp_path / "db"))
    collection = client.create_collection(
        "stsb", embedding_function=ChromaEmbeddingFunction(pipeline), configuration=COSINE
    )
    collection.add(ids=[str(i) for i in range(len(sentences))], documents=sentences)
    queries = sentences[::10]
    found = collection.query(query_texts=queries, n_results=10)["ids"]
    vectors = pipeline.encode(sentences)
    _, exact = search_exact(pipeline.encode(queries), vectors, 10)
    assert _recall_at_10([[int(i) for i in row] for row in found], exact) >= 0.99


# --- LangChain ----------------------------------------------------------------------------------------------------


def test_langchain_embeddings_are_the_pipelines_vectors(tiny_pipeline):
    from sentflow.integrations.langchain import LangchainEmbeddings

    embeddings = LangchainEmbeddings(tiny_pipeline)
    documents = embeddings.embed_documents(SENTENCES)
    assert isinstance(documents, list) and all(isinstance(v, list) and isinstance(v[0], float) for v in documents)
    np.testing.assert_allclose(documents, tiny_pipeline.encode(SENTENCES), atol=1e-6)
    np.testing.assert_allclose(embeddings.embed_query(SENTENCES[1]), documents[1], atol=1e-6)
    assert embeddings.embed_documents([]) == []
    with pytest.raises(SentflowError, match="one string"):
        embeddings.embed_query(SENTENCES)


@pytest.mark.slow
def test_langchain_vector_store_returns_exact_neighbours(minilm_corpus):
    from langchain_core.vectorstores import InMemoryVectorStore

    from sentflow.integrations.langchain import LangchainEmbeddings

    pipeline, sentences = minilm_corpus
    store = InMemoryVectorStore(LangchainEmbeddings(pipeline))
    store.add_texts(sentences, ids=[str(i) for i in range(len(sentences))])
    queries = sentences[1::250]
    _, exact = search_exact(pipeline.encode(queries), pipeline.encode(sentences), 5)
    for query, expected in zip(queries, exact, strict=True):
        found = [int(doc.id) for doc in store.similarity_search(query, k=5)]
        assert found == expected.tolist()


# --- docs -----------------------------------------------------------------------------------------------------------

DOC = ROOT / "docs" / "integrations.md"
DOC_BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S) if DOC.is_file() else []


def test_integrations_doc_has_an_example_for_each():
    modules = [p for p in (ROOT / "sentflow" / "integrations").glob("*.py") if not p.name.startswith("_")]
    assert len(DOC_BLOCKS) == len(modules) == 4  # MTEB, Chroma, LangChain, LanceDB; test_docs runs each one
