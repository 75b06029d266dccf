"""One resolver decides what a data argument is, for every entry point; fitted results are saved by one function."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import sentflow
from sentflow import SentflowError, Whitening
from sentflow.pipeline import save_fitted
from sentflow.tasks.sources import (
    BeirSource,
    CalibrationSource,
    EmbeddingSource,
    PipelineSource,
    StsTaskSource,
    TextSource,
    resolve_source,
)
from sentflow.tasks.sts_task import encode_sts_task, load_sts_task


def test_each_kind_of_argument_resolves_to_its_source(tmp_path, tiny_bert_dir):
    shards = tmp_path / "shards"
    shards.mkdir()
    np.save(shards / "a.npy", np.ones((3, 4), np.float32))
    (tmp_path / "beir").mkdir()
    (tmp_path / "beir" / "corpus.jsonl").write_text("{}\n")
    text = tmp_path / "s.txt"
    text.write_text("a sentence\n")
    odd = tmp_path / "x[1].npy"
    np.save(odd, np.ones((3, 4), np.float32))
    Whitening().fit(np.random.default_rng(0).normal(size=(20, 4))).save(tmp_path / "calib.bin")
    sentflow.Pipeline(sentflow.Encoder(str(tiny_bert_dir), cache=False)).save(tmp_path / "pipe")
    assert resolve_source("sts-b") == StsTaskSource("sts-b")
    assert resolve_source(tmp_path / "beir") == BeirSource(tmp_path / "beir")
    assert resolve_source(shards) == EmbeddingSource(str(shards))
    assert resolve_source(str(shards / "*.npy")) == EmbeddingSource(str(shards / "*.npy"))
    assert resolve_source(text) == TextSource(text)
    assert resolve_source(odd) == EmbeddingSource(str(odd))  # an existing file, not a glob
    assert resolve_source(tmp_path / "calib.bin") == CalibrationSource(tmp_path / "calib.bin")  # sniffed
    assert resolve_source(tmp_path / "pipe") == PipelineSource(tmp_path / "pipe")


def test_unknown_and_unwanted_arguments_get_one_line(tmp_path):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "a.jpg").write_bytes(b"x")
    with pytest.raises(SentflowError, match="cannot tell what this directory is"):
        resolve_source(tmp_path / "photos")
    with pytest.raises(SentflowError, match="no such file or directory, and not a task name"):
        resolve_source(tmp_path / "missing.txt")
    with pytest.raises(SentflowError, match="is an STS task, but tune takes a BEIR folder"):
        resolve_source("sts-b", (BeirSource,), role="tune")
    np.savez(tmp_path / "v.npz", a=np.ones(2))
    with pytest.raises(SentflowError, match=".npz archives are not read"):
        resolve_source(tmp_path / "v.npz")


def test_the_sts_task_encodes_each_sentence_once_and_lays_rows_out_per_split(tiny_bert_dir, stsb_slice_dir):
    task = load_sts_task("sts-b", "all", stsb_slice_dir)
    assert task.fit_on == ("train", "dev", "test")
    assert task.fit_sentences == [s for split in task.fit_on for s in task.pairs(split).sentences]
    encoder = sentflow.Encoder(str(tiny_bert_dir), cache=False)
    encoded = encode_sts_task(encoder, task)
    np.testing.assert_allclose(encoded.fit_rows, encoder.encode(task.fit_sentences), atol=1e-5)
    first, second = encoded.pair_vectors("test")
    np.testing.assert_allclose(second, encoder.encode(task.pairs("test").sentences2), atol=1e-5)
    assert len(first) == len(task.pairs("test")) and task.subsets == (len(task.pairs("test")),)


def test_senteval_subsets_come_from_the_one_parser(tmp_path):
    folder = tmp_path / "STS13-en-test"
    folder.mkdir()
    for name, pairs, gold in (("a", ["x\ty", "p\tq", "r\ts"], ["1", "", "3"]), ("b", ["u\tv", "w\tz"], ["2", "4"])):
        (folder / f"STS.input.{name}.txt").write_text("\n".join(pairs) + "\n")
        (folder / f"STS.gs.{name}.txt").write_text("\n".join(gold) + "\n")
    task = load_sts_task("sts13", "all", tmp_path)
    assert task.subsets == (2, 2)  # the unscored pair of subset a is skipped
    assert task.pairs("test").sentences1 == ["x", "r", "u", "w"]


def test_a_pipeline_is_never_written_for_vectors_of_unknown_origin(tmp_path, tiny_bert_dir):
    X = np.random.default_rng(0).normal(size=(200, 50)).astype(np.float32)
    whitening = Whitening().fit(X)
    with pytest.raises(SentflowError, match="came from .npy files: name it with model and pooling"):
        save_fitted(whitening, tmp_path / "pipe")
    encoder = sentflow.Encoder(str(tiny_bert_dir), cache=False)  # 32-d, not 50-d
    with pytest.raises(SentflowError, match="fitted on 50-d vectors but .* makes 32-d ones"):
        save_fitted(whitening, tmp_path / "pipe", encoder)
    assert not (tmp_path / "pipe").exists()
    save_fitted(whitening, tmp_path / "calib.SafeTensors")  # a calibration file (suffix in any case) records no model
    assert sentflow.load(tmp_path / "calib.SafeTensors").fitted_for_ == {"model": None, "pooling": None}


def test_cli_fit_on_npy_refuses_a_pipeline_that_would_claim_the_default_encoder(tmp_path):
    data = tmp_path / "x.npy"
    np.save(data, np.random.default_rng(0).normal(size=(200, 50)).astype(np.float32))
    run = subprocess.run(
        [sys.executable, "-m", "sentflow.cli", "fit", "--data", str(data), "--out", str(tmp_path / "pipe")],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 1 and run.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "--model and --pooling" in run.stderr and "Traceback" not in run.stderr
    assert not (tmp_path / "pipe").exists()
