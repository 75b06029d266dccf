"""Pipeline: one directory for text -> final vector, its round trip, refusals, and the sentence-transformers export."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from sentflow.cli.main import app
from typer.testing import CliRunner

import sentflow
from sentflow.errors import SentflowError

SENTENCES = ["a man is playing a guitar .", "the woman is eating", "a dog on the beach", "girl", "people"] * 3


@pytest.fixture()
def corpus_vectors(tiny_bert_dir, stsb_slice_dir):
    def encode(pooling: str) -> tuple[sentflow.Encoder, np.ndarray]:
        encoder = sentflow.Encoder(str(tiny_bert_dir), pooling, cache=False)
        return encoder, encoder.encode(sentflow.load_sts("sts-b", "train", stsb_slice_dir).sentences)

    return encode


def test_pipeline_is_encoder_then_calibration_then_normalisation(corpus_vectors, tmp_path):
    encoder, X = corpus_vectors("last-avg")
    whitening = sentflow.Whitening(n_components=8).fit(X)
    pipeline = sentflow.Pipeline(encoder, whitening, normalize=True)
    Z = (encoder.encode(SENTENCES).astype(np.float64) - whitening.mean_) @ whitening.components_.T
    expected = Z / np.linalg.norm(Z, axis=1, keepdims=True)
    np.testing.assert_allclose(pipeline.encode(SENTENCES), expected, atol=1e-5)
    pipeline.save(tmp_path / "pipe")
    config = json.loads((tmp_path / "pipe" / "pipeline.json").read_text())
    assert config["pooling"] == "last-avg" and config["normalize"] is True and config["max_length"] == 256
    assert config["model"] == str(encoder.model_name) and config["sentflow_version"] == sentflow.__version__
    loaded = sentflow.load(tmp_path / "pipe")
    assert isinstance(loaded, sentflow.Pipeline)
    np.testing.assert_array_equal(loaded.encode(SENTENCES), pipeline.encode(SENTENCES))
    bare = sentflow.Pipeline(encoder)
    bare.save(tmp_path / "pipe")  # replaces the earlier pipeline directory
    assert sorted(p.name for p in (tmp_path / "pipe").iterdir()) == [".sentflow-files.json", "pipeline.json"]
    np.testing.assert_array_equal(sentflow.load(tmp_path / "pipe").encode(SENTENCES), encoder.encode(SENTENCES))


def test_bad_pipeline_directories_are_refused(corpus_vectors, tmp_path):
    encoder, X = corpus_vectors("cls")
    pipe = tmp_path / "pipe"
    sentflow.Pipeline(encoder, sentflow.Whitening(n_components=4).fit(X)).save(pipe)
    good = json.loads((pipe / "pipeline.json").read_text())

    def rewrite(**changes) -> None:
        (pipe / "pipeline.json").write_text(json.dumps({**good, **changes}))

    cases = [
        ({"pooling": "last-avg"}, "its calibration was fitted for pooling 'cls', the pipeline uses 'last-avg'"),
        ({"max_length": 10**9}, "field 'max_length': Input should be less than or equal to 1048576"),
        ({"normalize": "yes"}, "field 'normalize': Input should be a valid boolean"),
        ({"format": "pickle"}, "field 'format': Input should be 'sentflow-pipeline'"),
        ({"calibration": "../elsewhere.safetensors"}, "field 'calibration': Input should be 'calibration.safetensors'"),
        ({"extra": 1}, "field 'extra': Extra inputs are not permitted"),
        ({"pooling": "c" * 600}, "field 'pooling': String should have at most 512 characters"),
    ]
    for changes, message in cases:
        rewrite(**changes)
        with pytest.raises(SentflowError, match=None) as info:
            sentflow.load(pipe)
        assert message in str(info.value), str(info.value)
    rewrite()
    (pipe / "calibration.safetensors").unlink()
    with pytest.raises(SentflowError, match="calibration.safetensors: no such file"):
        sentflow.load(pipe)
    (pipe / "pipeline.json").write_text("[" * 50_000)
    with pytest.raises(SentflowError, match="Invalid JSON: recursion limit exceeded"):
        sentflow.load(pipe)
    with pytest.raises(SentflowError, match="cannot tell what this directory is: it holds no pipeline.json"):
        sentflow.load(tmp_path)
    unrelated = tmp_path / "photos"
    unrelated.mkdir()
    (unrelated / "holiday.jpg").write_bytes(b"precious")
    with pytest.raises(SentflowError, match="non-empty directory without pipeline.json"):
        sentflow.Pipeline(encoder).save(unrelated)
    assert (unrelated / "holiday.jpg").read_bytes() == b"precious"


ST_SCRIPT = """
import json, sys
import numpy as np
from sentence_transformers import SentenceTransformer
model = SentenceTransformer(sys.argv[1], device="cpu")
vectors = model.encode(json.loads(sys.argv[2]), batch_size=1)
assert "sentflow" not in sys.modules
np.save(sys.argv[3], vectors)
"""


@pytest.mark.slow
@pytest.mark.parametrize(
    ("pooling", "dim", "power", "normalize"), [("last-avg", 6, 0.5, True), ("cls", 4, 0.25, False)]
)
def test_sentence_transformers_export_computes_the_same_vectors(
    corpus_vectors, tmp_path, pooling, dim, power, normalize
):
    """The exported directory, loaded by sentence-transformers in a process without sentflow, equals Pipeline.encode."""
    encoder, X = corpus_vectors(pooling)
    whitening = sentflow.Whitening(n_components=dim, power=power).fit(X)
    pipeline = sentflow.Pipeline(encoder, whitening, normalize=normalize)
    pipeline.to_sentence_transformer(tmp_path / "st")
    out = tmp_path / "st.npy"
    done = subprocess.run(
        [sys.executable, "-c", ST_SCRIPT, str(tmp_path / "st"), json.dumps(SENTENCES), str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    np.testing.assert_allclose(np.load(out), pipeline.encode(SENTENCES), atol=1e-5)


def test_exports_sentence_transformers_cannot_express_are_refused(corpus_vectors, tmp_path):
    encoder, X = corpus_vectors("first-last-avg")
    with pytest.raises(SentflowError, match="pooling 'first-last-avg' cannot be exported"):
        sentflow.Pipeline(encoder).to_sentence_transformer(tmp_path / "st")
    encoder, X = corpus_vectors("cls")
    flow = sentflow.BertFlow(levels=1, depth=1, hidden=4, progress=False).fit(X)
    with pytest.raises(SentflowError, match="a flow calibration is not linear"):
        sentflow.Pipeline(encoder, flow).to_sentence_transformer(tmp_path / "st")
    assert not (tmp_path / "st").exists()


def test_cli_fit_writes_a_pipeline_that_encode_uses(tiny_bert_dir, stsb_slice_dir, tmp_path):
    runner = CliRunner()
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(SENTENCES) + "\n")
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(sentflow.load_sts("sts-b", "train", stsb_slice_dir).sentences) + "\n")
    model = ["--model", str(tiny_bert_dir), "--pooling", "cls"]
    pipe, out = tmp_path / "pipe", tmp_path / "out.npy"
    args = ["fit", "--data", str(corpus), "--dim", "6", "--normalize", "--out", str(pipe), *model]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["encode", str(texts), "--pipeline", str(pipe), "--out", str(out)])
    assert result.exit_code == 0, result.output
    np.testing.assert_allclose(np.load(out), sentflow.load(pipe).encode(SENTENCES), atol=1e-6)
    assert np.allclose(np.linalg.norm(np.load(out), axis=1), 1.0, atol=1e-5) and np.load(out).shape == (15, 6)
