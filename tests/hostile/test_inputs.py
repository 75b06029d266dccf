"""Hostile inputs that used to end in an internal error, an abort or silent acceptance: each is now exit 1 with
one final `error:` line naming the problem, no traceback, and nothing written."""

from __future__ import annotations

import json
import pickle
import shutil
import socket
import subprocess
import sys

import numpy as np
import pytest
from sentflow.cli.main import app
from test_retrieval import write_beir
from typer.testing import CliRunner

from sentflow.errors import SentflowError

runner = CliRunner()


def one_error(result) -> str:
    """The final line of a failed command, checked to be the only error and no traceback."""
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and "internal error" not in result.output, result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("error: ") and result.output.count("error: ") == 1, result.output
    return last


@pytest.fixture()
def lines(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("a man plays\nthe dog barks\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("spec", ["layers:--1", "layers:\u00b2", "layers:1_0", "layers:1,,2", "layers:99999"])
def test_a_malformed_layer_list_is_one_line(tiny_bert_dir, lines, tmp_path, spec):
    out = tmp_path / "o.npy"
    args = ["encode", str(lines), "--out", str(out), "--model", str(tiny_bert_dir), "--pooling", spec]
    result = runner.invoke(app, args)
    assert "pooling" in one_error(result) and not out.exists()


def test_a_malformed_layer_list_in_a_pipeline_file_is_one_line(tiny_bert_dir, lines, tmp_path):
    vectors = tmp_path / "v.npy"
    np.save(vectors, np.random.default_rng(0).standard_normal((100, 32)).astype(np.float32))
    pipeline = tmp_path / "p"
    fit = ["fit", "--data", str(vectors), "--out", str(pipeline), "--model", str(tiny_bert_dir), "--pooling", "cls"]
    assert runner.invoke(app, fit).exit_code == 0
    config = json.loads((pipeline / "pipeline.json").read_text())
    (pipeline / "pipeline.json").write_text(json.dumps({**config, "pooling": "layers:--1"}))
    result = runner.invoke(app, ["encode", str(lines), "--out", str(tmp_path / "o.npy"), "--pipeline", str(pipeline)])
    assert "layers:--1" in one_error(result)


def test_pickle_weights_are_refused_by_name(tiny_bert_dir, lines, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(tiny_bert_dir, model)
    for weights in model.glob("*.safetensors"):
        weights.unlink()
    (model / "pytorch_model.bin").write_bytes(pickle.dumps({"not": "weights"}))
    result = runner.invoke(app, ["encode", str(lines), "--out", str(tmp_path / "o.npy"), "--model", str(model)])
    assert "pickle weights are not loaded: convert them to safetensors" in one_error(result)


@pytest.mark.parametrize(("scheme", "needs"), [("tls", "TLS settings"), ("ucx", "UCX support"), ("wss", "TLS")])
def test_schedulers_that_need_more_than_an_address_say_what(tmp_path, scheme, needs):
    pytest.importorskip("distributed")
    vectors = tmp_path / "v.npy"
    np.save(vectors, np.random.default_rng(0).standard_normal((100, 8)).astype(np.float32))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    out = tmp_path / "w.safetensors"
    args = ["fit", "--data", str(vectors), "--out", str(out), "--scheduler", f"{scheme}://127.0.0.1:{port}"]
    last = one_error(runner.invoke(app, args))
    assert f"{scheme}:// needs" in last and needs in last and not out.exists()


def test_a_scheduler_without_workers_is_refused_after_a_timeout():
    distributed = pytest.importorskip("distributed")
    from sentflow.distributed import connect

    no_workers = "has no worker after 1 s; start one with `dask worker"
    with (
        distributed.LocalCluster(n_workers=0, processes=False, dashboard_address=":0") as empty,
        pytest.raises(SentflowError, match=no_workers),
    ):
        connect(empty.scheduler_address, workers_timeout=1.0)


@pytest.mark.parametrize("factory", ["HNSW0", "HNSW1", "NSG1", "IVF99999999,Flat"])
def test_faiss_factories_that_would_abort_the_process_are_refused(factory):
    pytest.importorskip("faiss")
    code = (
        "from sentflow.search.faiss_index import make_faiss_index\n"
        "from sentflow.errors import SentflowError\n"
        f"try: make_faiss_index({factory!r}, 16)\n"
        "except SentflowError as exc: print(exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr  # an abort would be -6
    assert factory in done.stdout and ("graph degree" in done.stdout or "out of range" in done.stdout)


@pytest.mark.parametrize("line", ["   ", "\t\t", " \t "])
def test_a_qrels_line_of_only_blanks_is_refused(tmp_path, line):
    from sentflow import load_retrieval_task

    folder = write_beir(tmp_path / "b", qrels=f"q1\td1\t1\n{line}\nq2\td2\t1\n")
    with pytest.raises(SentflowError, match="test.tsv, line 2: expected query-id, corpus-id, score"):
        load_retrieval_task(folder)


def test_outputs_in_missing_directories_and_the_current_directory(tiny_bert_dir, lines, tmp_path, monkeypatch):
    out = tmp_path / "a" / "b" / "c" / "o.npy"
    result = runner.invoke(app, ["encode", str(lines), "--out", str(out), "--model", str(tiny_bert_dir)])
    assert result.exit_code == 0, result.output  # made like every other output's folder
    assert np.load(out).shape == (2, 32)
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.chdir(empty)
    args = ["index", str(lines), "--out", ".", "--model", str(tiny_bert_dir), "--quantize", "int8"]
    assert "is the current directory or holds it" in one_error(runner.invoke(app, args))
    assert list(empty.iterdir()) == []


def test_a_reader_that_stops_early_ends_the_command_quietly(tiny_bert_dir, stsb_slice_dir):
    code = "from sentflow.cli.main import main; main()"
    args = [sys.executable, "-c", code, "eval", "sts-b", "--methods", "none", "--json", "--model", str(tiny_bert_dir)]
    args += ["--data-dir", str(stsb_slice_dir)]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # as `| head -c 10` does once it has its bytes
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=300) != 0
    assert "Traceback" not in err and "Exception ignored" not in err
