"""Hostile cases for directory outputs (pipelines, sentence-transformers exports, compact indexes): sentflow only
ever replaces what it wrote there itself, so a re-run never deletes a user's files."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from sentflow.cli.main import app
from typer.testing import CliRunner

import sentflow
from sentflow.errors import SentflowError
from sentflow.files.io import OWN_FILES

runner = CliRunner()


@pytest.fixture()
def vectors(tmp_path):
    path = tmp_path / "s.npy"
    np.save(path, np.random.default_rng(0).standard_normal((300, 32)).astype(np.float32))
    return path


def fit_pipeline(vectors, out, tiny_bert_dir, *extra: str):
    args = ["fit", "--data", str(vectors), "--out", str(out), "--model", str(tiny_bert_dir), "--pooling", "cls"]
    return runner.invoke(app, [*args, "--dim", "16", *extra])


def snapshot(directory):
    return {p.relative_to(directory).as_posix(): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("user_file", ["my_index.faiss", "notes/n.txt"])
def test_refitting_into_a_pipeline_directory_with_user_files_keeps_them(vectors, tmp_path, tiny_bert_dir, user_file):
    out = tmp_path / "p"
    assert fit_pipeline(vectors, out, tiny_bert_dir).exit_code == 0
    (out / user_file).parent.mkdir(exist_ok=True)
    (out / user_file).write_text("mine")
    before = snapshot(out)
    result = fit_pipeline(vectors, out, tiny_bert_dir)
    assert result.exit_code == 1 and "Traceback" not in result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("error: ") and "which sentflow did not write there" in last
    assert user_file.split("/")[0] in last
    assert snapshot(out) == before  # nothing changed, the user's file included
    (out / user_file).unlink()
    if "/" in user_file:
        (out / user_file).parent.rmdir()
    assert fit_pipeline(vectors, out, tiny_bert_dir).exit_code == 0  # its own files alone: replaced


def test_a_directory_output_of_an_older_version_is_refused_not_guessed(vectors, tmp_path, tiny_bert_dir):
    out = tmp_path / "p"
    assert fit_pipeline(vectors, out, tiny_bert_dir).exit_code == 0
    (out / OWN_FILES).unlink()
    result = fit_pipeline(vectors, out, tiny_bert_dir)
    assert result.exit_code == 1 and f"has no {OWN_FILES}" in result.output
    assert (out / "pipeline.json").is_file()


def test_a_damaged_list_of_own_files_protects_everything(vectors, tmp_path, tiny_bert_dir):
    out = tmp_path / "p"
    assert fit_pipeline(vectors, out, tiny_bert_dir).exit_code == 0
    (out / OWN_FILES).write_text('{"not": "a list"}')
    result = fit_pipeline(vectors, out, tiny_bert_dir)
    assert result.exit_code == 1 and "which sentflow did not write there" in result.output


def test_a_link_planted_in_an_output_directory_is_not_ours(vectors, tmp_path, tiny_bert_dir):
    out = tmp_path / "p"
    assert fit_pipeline(vectors, out, tiny_bert_dir).exit_code == 0
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("keep")
    (out / "calibration.safetensors").unlink()
    (out / "calibration.safetensors").symlink_to(victim)  # same name as ours, but a link
    result = fit_pipeline(vectors, out, tiny_bert_dir)
    assert result.exit_code == 1 and (victim / "keep.txt").read_text() == "keep"


def test_sentence_transformers_export_keeps_user_files_and_never_targets_the_model(tmp_path, tiny_bert_dir):
    pytest.importorskip("sentence_transformers")
    encoder = sentflow.Encoder(str(tiny_bert_dir), "cls", cache=False)
    rows = np.random.default_rng(1).standard_normal((200, 32)).astype(np.float32)
    pipeline = sentflow.Pipeline(encoder, sentflow.Whitening(n_components=8).fit(rows))
    out = tmp_path / "st"
    pipeline.to_sentence_transformer(out)
    (out / "README-mine.md").write_text("mine")
    with pytest.raises(SentflowError, match="README-mine.md, which sentflow did not write there"):
        pipeline.to_sentence_transformer(out)
    assert (out / "README-mine.md").read_text() == "mine"
    model_copy = tmp_path / "model"
    shutil.copytree(tiny_bert_dir, model_copy)
    before = snapshot(model_copy)
    local = sentflow.Pipeline(sentflow.Encoder(str(model_copy), "cls", cache=False), pipeline.calibration)
    for target in (model_copy, model_copy / "export", tmp_path):
        with pytest.raises(SentflowError, match="an input of this command|is also an input|non-empty directory"):
            local.to_sentence_transformer(target)
    assert snapshot(model_copy) == before


def test_an_index_directory_with_user_files_is_not_replaced(tmp_path, tiny_bert_dir):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(f"the man plays guitar {i}" for i in range(40)) + "\n")
    out = tmp_path / "idx"
    args = ["index", str(corpus), "--out", str(out), "--model", str(tiny_bert_dir), "--quantize", "int8"]
    assert runner.invoke(app, args).exit_code == 0
    listed = json.loads((out / OWN_FILES).read_text())
    assert "index.json" in listed and OWN_FILES not in listed
    (out / "mine.txt").write_text("mine")
    result = runner.invoke(app, args)
    assert result.exit_code == 1 and "mine.txt, which sentflow did not write there" in result.output
    assert (out / "mine.txt").read_text() == "mine"
