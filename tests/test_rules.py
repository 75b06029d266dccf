"""Each rule lives in one place and holds at every entry point: a pipeline's width (B1), what a `.jsonl` data
argument is (B2), messages that name parameters as the front end names them (B4, B6), and protocol checks that
load nothing (B5)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sentflow.cli.main import app
from typer.testing import CliRunner

import sentflow
from sentflow.errors import Param, SentflowError
from sentflow.protocols import ModelEncoder, TextEncoder, conforms

WORDS = "a the man woman girl dog cat is are playing eating running guitar ball on in with and of hair street".split()
_rng = np.random.default_rng(0)
DOCS = [  # 60 documents of the tiny BERT's words, some without a title
    {"_id": f"d{i}", "title": " ".join(_rng.choice(WORDS, i % 3)), "text": " ".join(_rng.choice(WORDS, 6))}
    for i in range(60)
]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sentflow.cli", *args], capture_output=True, text=True, timeout=300)


def last_error(done: subprocess.CompletedProcess) -> str:
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1 and lines[-1].startswith("error: ") and "Traceback" not in done.stderr, done.stderr
    return lines[-1]


@pytest.fixture()
def corpus_jsonl(tmp_path) -> Path:
    path = tmp_path / "corpus.jsonl"
    path.write_text("".join(json.dumps(doc) + "\n" for doc in DOCS), encoding="utf-8")
    return path


# --- B1: a pipeline's calibration fits its encoder's width, checked by the Pipeline itself ----------------------


def test_a_pipeline_refuses_a_calibration_of_another_width(tiny_bert_dir):
    encoder = sentflow.make_encoder(str(tiny_bert_dir), cache=False)  # 32-d vectors
    whitening = sentflow.Whitening().fit(np.random.default_rng(0).normal(size=(500, 50)))
    with pytest.raises(SentflowError, match=r"fitted on 50-d vectors .* makes 32-d ones"):
        sentflow.Pipeline(encoder, whitening)
    assert not encoder._backend.loaded  # the width comes from the model's config: no weights were loaded


def test_loading_a_pipeline_whose_calibration_has_another_width_fails_at_load(tiny_bert_dir, tmp_path):
    encoder = sentflow.make_encoder(str(tiny_bert_dir), cache=False)
    X = encoder.encode(["a man is playing the guitar .", "the dog", "men", "a girl is eating", "the cat"] * 8)
    sentflow.Pipeline(encoder, sentflow.Whitening(n_components=2).fit(X)).save(tmp_path / "pipe")
    sentflow.Whitening().fit(np.random.default_rng(0).normal(size=(200, 50))).save(tmp_path / "wide.safetensors")
    (tmp_path / "wide.safetensors").replace(tmp_path / "pipe" / "calibration.safetensors")
    with pytest.raises(SentflowError, match=r"pipe: the calibration was fitted on 50-d vectors"):
        sentflow.load(tmp_path / "pipe")


# --- B2: a .jsonl file is a BEIR corpus for every command, not a text file --------------------------------------


def test_a_jsonl_file_is_a_beir_corpus_to_the_one_classifier(corpus_jsonl):
    from sentflow.tasks.sources import CorpusSource, resolve_source

    assert resolve_source(corpus_jsonl) == CorpusSource(corpus_jsonl)


def test_encode_refuses_a_beir_corpus_and_says_what_it_is(corpus_jsonl, tmp_path):
    done = run_cli("encode", str(corpus_jsonl), "--out", str(tmp_path / "x.npy"))
    assert "a BEIR corpus" in last_error(done) and not (tmp_path / "x.npy").exists()


def test_fit_on_a_beir_corpus_reads_title_and_text_not_json(corpus_jsonl, tiny_bert_dir, tmp_path):
    texts = tmp_path / "docs.txt"
    texts.write_text("".join(f"{d['title']} {d['text']}".strip() + "\n" for d in DOCS), encoding="utf-8")
    runner = CliRunner()
    for data, out in ((corpus_jsonl, "from-jsonl.safetensors"), (texts, "from-text.safetensors")):
        args = ["fit", "--data", str(data), "--model", str(tiny_bert_dir), "--out", str(tmp_path / out)]
        result = runner.invoke(app, args)
        assert result.exit_code == 0 and "fitted on 60 rows" in result.output, result.output
    from_jsonl, from_text = (sentflow.load(tmp_path / f"from-{kind}.safetensors") for kind in ("jsonl", "text"))
    np.testing.assert_allclose(from_jsonl.mean_, from_text.mean_, rtol=1e-6, atol=1e-7)


# --- B4, B6: the library names Python parameters, the command line the flags of the command that ran -------------


def test_a_path_that_looks_like_a_parameter_name_is_printed_as_it_is(tmp_path):
    missing = tmp_path / "max_dim.txt"
    assert f"error: {missing}: no such file" in last_error(run_cli("encode", str(missing), "--out", "x.npy"))
    folder = tmp_path / "pairs_file"
    folder.mkdir()
    error = last_error(run_cli("tune", "sts-b", "--pairs", str(folder), "--out", str(tmp_path / "p")))
    assert str(folder) in error and "--pairs" not in error.replace(f"{folder}", "")


def test_library_messages_name_python_parameters(tiny_bert_dir):
    encoder = sentflow.make_encoder(str(tiny_bert_dir), cache=False)
    with pytest.raises(SentflowError, match=r"^fit_on='everything': unknown") as caught:
        sentflow.compare(encoder, fit_on="everything")
    assert caught.value.param == "fit_on" and "--" not in str(caught.value)
    with pytest.raises(SentflowError, match=r"pass its directory \(data_dir\)$") as caught:
        sentflow.load_sts("sts12", "test")
    assert caught.value.param == "data_dir"


def test_the_command_line_names_the_flags_of_its_own_signature(tmp_path):
    assert "error: --fit-on everything: unknown" in last_error(run_cli("eval", "sts-b", "--fit-on", "everything"))
    assert last_error(run_cli("eval", "sts12")).endswith("pass its directory (--data-dir)")
    error = last_error(run_cli("tune", "sts-b", "--select-on", "test", "--out", str(tmp_path / "p")))
    assert error.startswith("error: --select-on test: choose on dev or train")


def test_a_parameter_renders_by_who_shows_it():
    exc = SentflowError("add ", Param("resume", True), " or ", Param("select_on", "dev"), " here")
    assert str(exc) == "add resume=True or select_on='dev' here" and exc.param == "resume"
    flags = {"resume": "--resume", "select_on": "--select-on"}
    assert exc.render(flags.get) == "add --resume or --select-on dev here"
    assert exc.render({}.get) == str(exc)  # a parameter the command lacks keeps its Python name


# --- B5: telling an encoder apart loads no model ------------------------------------------------------------------


@pytest.fixture()
def unloadable_model(tmp_path) -> Path:
    folder = tmp_path / "broken-model"
    folder.mkdir()
    (folder / "config.json").write_text("{not json", encoding="utf-8")
    return folder


def test_protocol_checks_load_nothing_even_for_a_model_that_cannot_load(unloadable_model):
    encoder = sentflow.Encoder(str(unloadable_model), cache=False)
    assert conforms(encoder, TextEncoder) and conforms(encoder, ModelEncoder)
    assert not conforms(sentflow.Whitening(), TextEncoder)
    with pytest.raises(SentflowError, match="cannot load the config"):
        _ = encoder.dim  # the model is what fails, and only when it is used


def test_integrations_accept_an_encoder_without_loading_it(unloadable_model, tiny_bert_dir):
    from sentflow.integrations.langchain import LangchainEmbeddings
    from sentflow.integrations.mteb import MtebModel

    broken = sentflow.Encoder(str(unloadable_model), cache=False)
    assert LangchainEmbeddings(broken).pipeline is broken and broken._backend._config is None
    encoder = sentflow.Encoder(str(tiny_bert_dir), cache=False)
    assert MtebModel(encoder).mteb_model_meta.embed_dim == 32  # read from the config: no weights loaded
    assert not encoder._backend.loaded
    with pytest.raises(SentflowError, match="expected a sentflow Pipeline or Encoder"):
        LangchainEmbeddings(sentflow.Whitening())


# --- sentflow.fit: the library call that `sentflow fit` wraps ------------------------------------------------------


def test_fit_is_the_library_call_behind_the_command(tmp_path):
    X = np.random.default_rng(0).normal(size=(300, 16)) @ np.random.default_rng(1).normal(size=(16, 16))
    np.save(tmp_path / "x.npy", X.astype(np.float32))
    report = sentflow.fit(tmp_path / "x.npy", "whitening", tmp_path / "lib.safetensors", dim=8)
    assert (report.rows, report.dim_in, report.out) == (300, 16, tmp_path / "lib.safetensors")
    expected = sentflow.Whitening(n_components=8).fit(X.astype(np.float32))
    np.testing.assert_allclose(sentflow.load(report.out).transform(X), expected.transform(X), atol=1e-4)
    args = ["fit", "--data", str(tmp_path / "x.npy"), "--dim", "8", "--out", str(tmp_path / "cli.safetensors")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    from_cli = sentflow.load(tmp_path / "cli.safetensors")
    np.testing.assert_array_equal(from_cli.transform(X), report.calibration.transform(X))


def test_fit_refuses_before_any_work_naming_its_parameter(tmp_path):
    np.save(tmp_path / "x.npy", np.random.default_rng(0).normal(size=(50, 4)).astype(np.float32))
    with pytest.raises(SentflowError, match=r"^method='glow': unknown") as caught:
        sentflow.fit(tmp_path / "x.npy", "glow", tmp_path / "c.safetensors")
    assert caught.value.param == "method"
    with pytest.raises(SentflowError, match=r"came from .npy files: name it with model and pooling") as caught:
        sentflow.fit(tmp_path / "x.npy", out=tmp_path / "pipe")  # a pipeline must name the encoder of its vectors
    assert caught.value.param == "out" and not (tmp_path / "pipe").exists()


# --- training draws from its own random stream, never the global one ---------------------------------------------


def test_a_flow_fit_leaves_the_global_generators_alone_and_is_reproducible(tmp_path):
    import torch

    X = np.random.default_rng(0).normal(size=(400, 4)) @ np.random.default_rng(1).normal(size=(4, 4))
    options = {"levels": 1, "depth": 2, "hidden": 8, "epochs": 2, "batch_size": 64, "seed": 3, "device": "cpu"}
    torch.manual_seed(123)
    before = torch.get_rng_state()
    first = sentflow.BertFlow(**options).fit(X)
    assert torch.equal(torch.get_rng_state(), before)  # not reseeded, not advanced
    torch.manual_seed(999)  # another global state changes nothing
    np.testing.assert_array_equal(sentflow.BertFlow(**options).fit(X).transform(X), first.transform(X))
    stopped = sentflow.BertFlow(**{**options, "epochs": 1, "checkpoint_dir": str(tmp_path)}).fit(X)
    resumed = sentflow.BertFlow(**{**options, "checkpoint_dir": str(tmp_path)}).fit(X, resume=True)
    assert len(stopped.history_) == 1
    np.testing.assert_allclose(resumed.transform(X), first.transform(X), atol=1e-5)


def test_the_command_line_and_the_library_share_one_default_and_one_bound_per_encoder_option():
    import inspect

    import typer.main

    from sentflow.files.schemas import MIN_LENGTH

    library = inspect.signature(sentflow.Encoder).parameters
    seen = set()
    for command in typer.main.get_command(app).commands.values():
        for sub in getattr(command, "commands", {command.name: command}).values():
            for param in sub.params:
                if param.name in ("model", "pooling", "batch_size", "max_length", "backend"):
                    seen.add(param.name)
                    # a default is the library's, or None (not given: the library's default applies)
                    assert param.default in (None, library[param.name].default), (sub.name, param.name)
                if param.name == "max_length":
                    assert param.min == MIN_LENGTH, sub.name
    assert seen == {"model", "pooling", "batch_size", "max_length", "backend"}
    with pytest.raises(sentflow.SentflowError, match=f"max_length >= {MIN_LENGTH}"):
        sentflow.Encoder(max_length=MIN_LENGTH - 1)


def test_normalize_needs_a_pipeline_directory_in_one_wording_everywhere(tmp_path):
    from sentflow.pipeline import save_fitted

    rows = np.random.default_rng(0).normal(size=(60, 6))
    np.save(tmp_path / "rows.npy", rows)
    bare = tmp_path / "w.safetensors"
    calls = {
        "fit": lambda: sentflow.fit(tmp_path / "rows.npy", out=bare, normalize=True),
        "fit without out": lambda: sentflow.fit(tmp_path / "rows.npy", normalize=True),
        "save_fitted": lambda: save_fitted(sentflow.Whitening().fit(rows), bare, normalize=True),
    }
    for name, call in calls.items():
        with pytest.raises(SentflowError) as caught:
            call()
        assert caught.value.param == "normalize", name
        assert str(caught.value) == "normalize=True is a pipeline setting: give out a directory name, not a " \
            ".safetensors file", name  # fmt: skip
    result = CliRunner().invoke(app, ["tune", "sts-b", "--normalize", "--out", str(bare)])
    assert result.exit_code == 1 and result.stderr.strip() == (
        "error: --normalize is a pipeline setting: give --out a directory name, not a .safetensors file"
    )
    assert not bare.exists()
