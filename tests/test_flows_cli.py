"""`sentflow flows train | eval | sample` through Typer's CliRunner, including bad input."""

from __future__ import annotations

import gzip
import json
import re

import numpy as np
import pytest
import torch
import typer
from forge import forge_tensors
from matplotlib.image import imread
from test_flows_data import idx_bytes
from test_flows_layers import one_thread  # noqa: F401
from typer.testing import CliRunner

from sentflow.files.io import load_tensors
from sentflow.files.schemas import TrainCounters

try:
    from sentflow.cli.flows import flows_app
except ImportError:  # not installed: run from the repository root
    from cli.flows import flows_app

app = typer.Typer()
app.add_typer(flows_app, name="flows")
runner = CliRunner()
TINY_GLOW = json.dumps({"levels": 2, "steps": 1, "hidden": 8})


def bpd(output: str) -> float:
    return float(re.search(r"test bits/dim: ([0-9.]+)", output).group(1))


def train_glow(out, *args: str) -> list[str]:
    """`flows train glow` arguments with the settings these tests share (batch 128, seed 3, one thread)."""
    return ["flows", "train", "glow", "--out", str(out), "--batch-size", "128", "--seed", "3", "--threads", "1", *args]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    args = ["--epochs", "1", "--config", TINY_GLOW]
    result = runner.invoke(app, train_glow(out, *args))
    assert result.exit_code == 0, result.output
    return out / "checkpoint.safetensors", result.output


def test_train_writes_a_checkpoint_and_eval_reproduces_its_test_bpd(trained) -> None:
    path, output = trained
    assert path.is_file() and 1.0 < bpd(output) < 8.0
    result = runner.invoke(app, ["flows", "eval", str(path), "--data", "digits", "--seed", "3"])
    assert result.exit_code == 0, result.output
    assert bpd(result.output) == bpd(output)


def test_resume_continues_from_the_checkpoint(trained, tmp_path) -> None:
    path, _ = trained
    (tmp_path / "checkpoint.safetensors").write_bytes(path.read_bytes())
    result = runner.invoke(app, train_glow(tmp_path, "--epochs", "2", "--resume"))
    assert result.exit_code == 0, result.output
    assert load_tensors(tmp_path / "checkpoint.safetensors", TrainCounters)[1].epoch == 2


def test_sample_writes_a_png_grid(trained, tmp_path) -> None:
    path, _ = trained
    out = tmp_path / "grid.png"
    result = runner.invoke(
        app, ["flows", "sample", str(path), "--n", "16", "--temperature", "0.7", "--scale", "2", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert imread(out).shape[:2] == (2 * (4 * 9 + 1), 2 * (4 * 9 + 1))  # 4x4 tiles of 8 px + 1 px padding


def error_of(args: list[str]) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ")
    return lines[0]


def test_bad_inputs_give_one_line_errors_and_exit_code_1(trained, tmp_path) -> None:
    path, _ = trained
    assert "unknown model" in error_of(["flows", "train", "pixelcnn", "--out", str(tmp_path)])
    assert "not found" in error_of(
        ["flows", "train", "nice", "--out", str(tmp_path), "--data", f"mnist:{tmp_path / 'absent'}"]
    )
    assert "JSON" in error_of(["flows", "train", "glow", "--out", str(tmp_path), "--config", "{oops"])
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"not a safetensors file")
    assert "broken.safetensors" in error_of(["flows", "eval", str(broken)])
    assert "no such file" in error_of(["flows", "sample", str(tmp_path / "none.safetensors")])


def test_a_checkpoint_for_another_shape_is_refused(trained, tmp_path) -> None:
    path, _ = trained
    images = np.zeros((20, 28, 28), np.uint8)
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(images)))
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(20, np.uint8)))
    message = error_of(["flows", "eval", str(path), "--data", f"mnist:{tmp_path}"])
    assert "[1, 8, 8]" in message and "[1, 28, 28]" in message


def test_train_refuses_a_file_as_run_directory_before_training(tmp_path) -> None:
    from sentflow.cli.main import app
    from typer.testing import CliRunner

    target = tmp_path / "run.txt"
    target.write_text("keep")
    result = CliRunner().invoke(app, ["flows", "train", "nice", "--out", str(target), "--epochs", "1"])
    assert result.exit_code == 1 and "is a file; --out names the run directory" in result.stderr
    assert target.read_text() == "keep"


def test_eval_and_sample_accept_the_run_directory(trained, tmp_path) -> None:
    path, output = trained
    result = runner.invoke(app, ["flows", "eval", str(path.parent), "--data", "digits", "--seed", "3"])
    assert result.exit_code == 0, result.output
    assert bpd(result.output) == bpd(output)
    result = runner.invoke(app, ["flows", "sample", str(path.parent), "--n", "4", "--out", str(tmp_path / "g.png")])
    assert result.exit_code == 0 and (tmp_path / "g.png").read_bytes()[:4] == b"\x89PNG"


def test_configs_from_files_and_flags_are_bounded_before_building(trained, tmp_path) -> None:
    import time

    from safetensors import safe_open
    from safetensors.torch import load_file

    path, _ = trained
    with safe_open(str(path), framework="pt") as fh:
        header = fh.metadata()
    meta = json.loads(header["sentflow"])
    meta["config"]["steps"] = 10_000_000  # a 22 KB file asking for ten million layers
    hostile = tmp_path / "hostile.safetensors"
    forge_tensors(hostile, load_file(str(path)), meta)
    start = time.perf_counter()
    result = runner.invoke(app, ["flows", "eval", str(hostile)])
    assert result.exit_code == 1 and "steps=10000000 is out of range" in result.output
    assert time.perf_counter() - start < 30
    out = tmp_path / "run"
    result = runner.invoke(app, ["flows", "train", "glow", "--out", str(out), "--config", '{"hidden": -4}'])
    assert result.exit_code == 1 and "hidden=-4 is out of range (1 to 65536)" in result.output
    assert "Traceback" not in result.output


def test_train_into_an_existing_run_needs_resume_or_overwrite(trained, tmp_path) -> None:
    path, _ = trained
    before = path.read_bytes()
    (tmp_path / "checkpoint.safetensors").write_bytes(before)
    result = runner.invoke(app, train_glow(tmp_path, "--epochs", "1", "--config", TINY_GLOW))
    assert result.exit_code == 1
    assert "exists; add --resume to continue it or --overwrite to start over" in result.output
    assert (tmp_path / "checkpoint.safetensors").read_bytes() == before  # the better checkpoint is kept
    result = runner.invoke(app, train_glow(tmp_path, "--epochs", "1", "--config", TINY_GLOW, "--overwrite"))
    assert result.exit_code == 0, result.output


def test_an_unknown_config_key_lists_the_valid_ones(tmp_path) -> None:
    result = runner.invoke(app, ["flows", "train", "glow", "--out", str(tmp_path / "run"), "--config", '{"stepz": 4}'])
    assert result.exit_code == 1
    assert "unknown option(s) stepz for model 'glow'; valid: levels, steps, hidden, logit" in result.output
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("config", ['{"data_shape": [1, 4, 4]}', '{"n_bins": 3}'])
def test_config_keys_that_come_from_the_data_are_refused(tmp_path, config) -> None:
    result = runner.invoke(app, ["flows", "train", "glow", "--out", str(tmp_path / "run"), "--config", config])
    assert result.exit_code == 1
    assert "from --data; leave them out of --config" in result.output.splitlines()[-1]
    assert "Traceback" not in result.output and not (tmp_path / "run").exists()


def test_a_time_budget_says_it_ended_training_and_keeps_the_eta_within_it(tmp_path) -> None:
    args = train_glow(tmp_path / "run", "--epochs", "100000", "--minutes", "0.02", "--config", TINY_GLOW)
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    ended = re.search(r"--minutes 0.02\) ended training after epoch (\d+) of 100000", result.output)
    assert ended and 1 <= int(ended.group(1)) < 100000
    bars = re.findall(r"\| *(\d+)/(\d+) \[", result.output)
    steps_per_epoch = -(-1437 // 128)  # digits: 1,437 training images
    assert int(bars[0][1]) == 100000 * steps_per_epoch  # before a step is timed: every epoch
    done, total = map(int, bars[-1])
    assert done == total < 2 * int(ended.group(1)) * steps_per_epoch  # then what the budget allows


@pytest.mark.parametrize("rng", [torch.zeros(3), torch.zeros(7, dtype=torch.uint8)])
def test_resuming_a_checkpoint_with_a_malformed_rng_state_is_refused(trained, tmp_path, rng) -> None:
    from safetensors import safe_open
    from safetensors.torch import load_file

    path, _ = trained
    with safe_open(str(path), framework="pt") as fh:
        meta = json.loads(fh.metadata()["sentflow"])
    forged = forge_tensors(tmp_path / "checkpoint.safetensors", {**load_file(str(path)), "extra.rng": rng}, meta)
    before = forged.read_bytes()
    result = runner.invoke(app, train_glow(tmp_path, "--epochs", "2", "--resume"))
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "extra.rng is not a random-number state" in result.output.splitlines()[-1]
    assert forged.read_bytes() == before
