"""Python journeys: fit and save in one process, load and use in another (the way a serving process uses sentflow).

Step 1 (the `fitted` fixture) encodes 500 real STS-B sentences with the embedded model, fits a whitening, a
BERT-flow, a pipeline and a compact index, saves them and writes what it computed with them. Every test then loads
one artifact in a new interpreter that has run `import sentflow` and nothing else (journey_support.FRESH checks it)
and must reproduce step 1's numbers; the exports are read back by a third interpreter that does not import sentflow.
"""

from __future__ import annotations

import numpy as np
import pytest
from journey_support import run_python

pytestmark = pytest.mark.slow

TEXTS = ["A man is playing a guitar.", "Someone plays the guitar.", "A woman is slicing an onion.", "Dogs run."]


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """A journey directory holding every artifact, saved by one process, and that process's results."""
    folder = tmp_path_factory.mktemp("journey")
    run_python(
        f"""
        import numpy as np

        texts = {TEXTS!r}
        encoder = sentflow.Encoder(pooling="cls", max_length=32, show_progress=False)
        raw = encoder.encode(sentflow.load_sts("sts-b", "train").sentences[:500])
        np.save("raw.npy", raw)
        whitening = sentflow.Whitening(n_components=32).fit(raw)
        whitening.save("whitening.safetensors")
        np.save("whitened.npy", whitening.transform(raw))
        flow = sentflow.BertFlow(levels=2, depth=2, hidden=16, seed=0).fit(raw)
        flow.save("flow.safetensors")
        np.save("flowed.npy", flow.transform(raw[:50]))
        pipeline = sentflow.Pipeline(encoder, whitening, normalize=True)
        pipeline.save("pipeline")
        np.save("encoded.npy", pipeline.encode(texts))
        index = sentflow.CompactIndex.build(pipeline.transform(raw), ids=[f"doc{{i}}" for i in range(len(raw))])
        index.save("index")
        scores, rows = index.search(pipeline.encode(texts), k=5)
        np.save("scores.npy", scores)
        np.save("rows.npy", rows)
        """,
        folder,
    )
    return folder


def test_a_calibration_file_loads_in_a_new_process(fitted):
    run_python(
        """
        import numpy as np

        whitening = sentflow.load("whitening.safetensors")
        raw = np.load("raw.npy")
        np.testing.assert_allclose(whitening.transform(raw), np.load("whitened.npy"), rtol=1e-5, atol=1e-5)
        assert whitening.fitted_for_ == {"model": None, "pooling": None}
        assert sentflow.calibration.base.load_calibration("whitening.safetensors").n_components_out_ == 32
        """,
        fitted,
    )


def test_a_bertflow_loads_in_a_new_process_and_inverts(fitted):
    run_python(
        """
        import numpy as np

        flow = sentflow.load("flow.safetensors")
        assert type(flow).__name__ == "BertFlow"
        raw = np.load("raw.npy")[:50]
        z = flow.transform(raw)
        np.testing.assert_allclose(z, np.load("flowed.npy"), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(flow.inverse_transform(z), raw, rtol=1e-3, atol=1e-3)
        """,
        fitted,
    )


def test_a_pipeline_loads_in_a_new_process_and_exports(fitted):
    """The loaded pipeline encodes as the fitting process did; its faiss and sentence-transformers exports, read
    by processes without sentflow, give the same vectors and neighbours."""
    run_python(
        f"""
        import faiss
        import numpy as np

        pipeline = sentflow.load("pipeline")
        np.testing.assert_allclose(pipeline.encode({TEXTS!r}), np.load("encoded.npy"), rtol=1e-4, atol=1e-5)
        faiss.write_index(sentflow.build_index(pipeline, np.load("raw.npy")), "corpus.faiss")
        pipeline.to_sentence_transformer("st-model")
        """,
        fitted,
    )
    expected = np.load(fitted / "encoded.npy")
    corpus = np.load(fitted / "whitened.npy")
    corpus /= np.linalg.norm(corpus, axis=1, keepdims=True)
    np.save(fitted / "oracle.npy", expected @ corpus.T)  # brute force over the calibrated corpus (it has duplicates)
    run_python(
        f"""
        import faiss
        import numpy as np
        from sentence_transformers import SentenceTransformer

        vectors = SentenceTransformer("st-model", device="cpu").encode({TEXTS!r})
        np.testing.assert_allclose(vectors, np.load("encoded.npy"), rtol=1e-4, atol=1e-4)
        raw_queries = sentflow.load("pipeline").encoder.encode({TEXTS!r})
        scores, rows = faiss.read_index("corpus.faiss").search(raw_queries, 5)
        oracle = np.load("oracle.npy")
        np.testing.assert_allclose(scores, -np.sort(-oracle, axis=1)[:, :5], atol=1e-4)
        np.testing.assert_allclose(np.take_along_axis(oracle, rows, axis=1), scores, atol=1e-4)
        """,
        fitted,
    )


def test_a_compact_index_loads_in_a_new_process(fitted):
    run_python(
        f"""
        import numpy as np

        index = sentflow.CompactIndex.load("index")
        queries = sentflow.load("pipeline").encode({TEXTS!r})
        scores, rows = index.search(queries, k=5)
        assert (rows == np.load("rows.npy")).all()
        np.testing.assert_allclose(scores, np.load("scores.npy"), rtol=1e-5, atol=1e-6)
        assert index.ids[int(rows[0, 0])] == f"doc{{rows[0, 0]}}"
        """,
        fitted,
    )
