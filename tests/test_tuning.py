"""sentflow.tune: the choice is the dev-split argmax computed independently, test labels never move it, and the
reported scores equal what compare / evaluate_retrieval measure for the same settings."""

from __future__ import annotations

import json
import zlib

import numpy as np
import pytest
from scipy.stats import spearmanr

import sentflow
from sentflow.errors import SentflowError
from sentflow.evaluation.compare import compare
from sentflow.evaluation.tuning import POWERS, Setting, settings_for, transfer, tune
from sentflow.tasks.sts import SPLITS


class BagEncoder:
    """Mean of seeded random word vectors plus a shared offset and decaying scales: anisotropic, like sentence
    vectors, and free of the exact ties a tiny random BERT produces on STS-B's mostly unknown words."""

    model_name, pooling, dim = "bag-of-words", "avg", 24

    def encode(self, texts):
        scales = np.logspace(0, -1.5, self.dim)
        offset = np.random.default_rng(0).standard_normal(self.dim)
        rows = []
        for text in texts:
            words = text.lower().split() or [""]
            vectors = [np.random.default_rng(zlib.crc32(w.encode())).standard_normal(self.dim) for w in words]
            rows.append(3 * offset + scales * np.mean(vectors, axis=0))
        return np.asarray(rows, dtype=np.float32)


@pytest.fixture()
def encoder():
    return BagEncoder()


@pytest.fixture()
def bert(tiny_bert_dir):
    return sentflow.Encoder(str(tiny_bert_dir), "last-avg", show_progress=False)


def rowwise_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def test_search_space_follows_the_issue_and_the_budget():
    full = settings_for(384)
    assert full[0] == Setting("none", 384) and full[-1] == Setting("flow", 384)
    whitenings = {(s.dim, s.power) for s in full if s.method == "whitening"}
    assert whitenings == {(k, p) for k in (384, 256, 128, 64) for p in POWERS} and len(full) == 30
    budget = settings_for(384, max_dim=100, with_flow=False)
    assert {s.dim for s in budget if s.method == "whitening" and s.power != 0.5} == {100, 64}
    assert Setting("none", 384) in budget and Setting("whitening", 384, 0.5) in budget  # baselines, reported only
    assert {s.dim for s in settings_for(50)} == {50}
    with pytest.raises(SentflowError, match="max_dim=0"):
        settings_for(384, max_dim=0)


def test_choice_is_the_dev_argmax_computed_by_hand(encoder, stsb_slice_dir):
    report = tune(encoder, "sts-b", data_dir=stsb_slice_dir, with_flow=False, progress=False)
    splits = {s: sentflow.load_sts("sts-b", s, stsb_slice_dir) for s in SPLITS}
    unique = sorted({x for pairs in splits.values() for x in pairs.sentences})
    vector = dict(zip(unique, encoder.encode(unique), strict=True))  # one batch order: bit-identical vectors
    fit_rows = np.stack([vector[x] for s in SPLITS for x in splits[s].sentences])
    dev = splits["dev"]
    first, second = (np.stack([vector[x] for x in side]) for side in (dev.sentences1, dev.sentences2))
    by_hand = {Setting("none", 24): 100 * spearmanr(rowwise_cosine(first, second), dev.scores).statistic}
    for power in POWERS:
        w = sentflow.Whitening(power=power).fit(fit_rows)
        rows = w.transform(np.concatenate([first, second]))  # one product, as tune does: near-ties keep their order
        cos = rowwise_cosine(rows[: len(dev)], rows[len(dev) :])
        by_hand[Setting("whitening", 24, power)] = 100 * spearmanr(cos, dev.scores).statistic
    assert {c.setting: pytest.approx(c.dev, abs=1e-6) for c in report.candidates} == by_hand
    assert report.selected.setting == max(by_hand, key=by_hand.get)
    chosen = report.selected.setting
    assert report.calibrator is not None and report.calibrator.get_params()["power"] == chosen.power
    # the reported test scores are compare's, setting by setting
    for candidate in report.candidates[:3]:
        s = candidate.setting
        row = compare(
            encoder, "sts-b", [s.method], power=0.5 if s.power is None else s.power, data_dir=str(stsb_slice_dir)
        ).results[0]
        assert candidate.test == pytest.approx(row.spearman, abs=1e-6)


def test_test_labels_never_move_the_choice(encoder, stsb_slice_dir, tmp_path):
    for split in ("train", "dev"):
        (tmp_path / f"sts-{split}.csv").write_text((stsb_slice_dir / f"sts-{split}.csv").read_text())
    fields = [line.split("\t") for line in (stsb_slice_dir / "sts-test.csv").read_text().splitlines()]
    shuffled = np.random.default_rng(0).permutation([f[4] for f in fields])
    rows = ("\t".join([*f[:4], score, *f[5:]]) + "\n" for f, score in zip(fields, shuffled, strict=True))
    (tmp_path / "sts-test.csv").write_text("".join(rows))
    original = tune(encoder, "sts-b", data_dir=stsb_slice_dir, with_flow=False, progress=False)
    perturbed = tune(encoder, "sts-b", data_dir=tmp_path, with_flow=False, progress=False)
    assert perturbed.selected.setting == original.selected.setting
    assert [c.dev for c in perturbed.candidates] == [c.dev for c in original.candidates]
    assert [c.test for c in perturbed.candidates] != [c.test for c in original.candidates]


def test_pairs_file_selects_like_the_split_it_holds(encoder, stsb_slice_dir, tmp_path):
    dev = sentflow.load_sts("sts-b", "dev", stsb_slice_dir)
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text(
        "".join(f"{a}\t{b}\t{s}\n" for a, b, s in zip(dev.sentences1, dev.sentences2, dev.scores, strict=True))
    )
    on_dev = tune(encoder, "sts-b", data_dir=stsb_slice_dir, with_flow=False, progress=False)
    on_file = tune(encoder, "sts-b", data_dir=stsb_slice_dir, pairs_file=pairs, with_flow=False, progress=False)
    assert on_file.selected.setting == on_dev.selected.setting and on_file.select_on == str(pairs)
    assert [c.dev for c in on_file.candidates] == pytest.approx([c.dev for c in on_dev.candidates])
    pairs.write_text("one\ttwo\t3\nthree\tfour\n")
    with pytest.raises(SentflowError, match=r"pairs.tsv, line 2: expected sentence1, sentence2, score"):
        tune(encoder, "sts-b", data_dir=stsb_slice_dir, pairs_file=pairs)


def test_budget_and_report_shape(encoder, stsb_slice_dir):
    report = tune(encoder, "sts-b", data_dir=stsb_slice_dir, max_dim=16, progress=False)
    assert report.selected.setting.dim <= 16 and report.selected.setting.method == "whitening"
    eligible = [c for c in report.candidates if c.setting.dim <= 16]
    assert report.selected.dev == max(c.dev for c in eligible)
    data = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert {"task", "model", "pooling", "selected", "baseline", "candidates"} <= set(data)
    assert set(data["selected"]) == {"method", "dim", "power", "dev_spearman", "test_spearman"}
    assert set(data["baseline"]) == {"none", "whitening"} and data["baseline"]["whitening"]["dim"] == 24


def test_flow_is_a_candidate_and_can_be_saved(bert, stsb_slice_dir, tmp_path):
    report = tune(bert, "sts-b", data_dir=stsb_slice_dir, flow_options={"seed": 0}, progress=False)
    flow = [c for c in report.candidates if c.setting.method == "flow"]
    assert len(flow) == 1 and np.isfinite(flow[0].test)
    if report.calibrator is not None:
        report.calibrator.save(tmp_path / "c.safetensors")
        assert sentflow.load(tmp_path / "c.safetensors").method == report.selected.setting.method


def test_refusals(bert, stsb_slice_dir):
    encoder = bert
    with pytest.raises(SentflowError, match="never on the test labels"):
        tune(encoder, "sts-b", select_on="test", data_dir=stsb_slice_dir)
    with pytest.raises(SentflowError, match="sts13 has no dev split"):
        tune(encoder, "sts13", data_dir=stsb_slice_dir)


def write_beir(folder, pairs, split_of):
    """A BEIR folder from STS pairs: sentence1 queries, every sentence a document, pairs scored >= 3 relevant."""
    folder.mkdir()
    docs = sorted(set(pairs.sentences))
    doc_id = {s: f"d{i}" for i, s in enumerate(docs)}
    (folder / "corpus.jsonl").write_text("".join(json.dumps({"_id": doc_id[s], "text": s}) + "\n" for s in docs))
    queries = sorted(set(pairs.sentences1))
    query_id = {s: f"q{i}" for i, s in enumerate(queries)}
    (folder / "queries.jsonl").write_text("".join(json.dumps({"_id": query_id[s], "text": s}) + "\n" for s in queries))
    (folder / "qrels").mkdir()
    lines = {"train": set(), "test": set()}
    for a, b, score in zip(pairs.sentences1, pairs.sentences2, pairs.scores, strict=True):
        if score >= 3 and a != b:
            lines[split_of(query_id[a])].add(f"{query_id[a]}\t{doc_id[b]}\t1")
    for split, rows in lines.items():
        (folder / "qrels" / f"{split}.tsv").write_text("query-id\tcorpus-id\tscore\n" + "\n".join(sorted(rows)) + "\n")


def test_retrieval_selection_on_train_qrels(bert, stsb_slice_dir, tmp_path):
    encoder = bert
    from sentflow.evaluation.retrieval import evaluate_retrieval

    folder = tmp_path / "beir"
    train = sentflow.load_sts("sts-b", "train", stsb_slice_dir)
    write_beir(
        folder, sentflow.load_sts("sts-b", "train", stsb_slice_dir), lambda q: "train" if int(q[1:]) % 2 else "test"
    )
    report = tune(encoder, folder, select_on="train", with_flow=False, progress=False)
    assert report.metric == "ndcg@10" and report.select_on == "train"
    assert report.n_fit == len(set(train.sentences))  # fitted on the corpus
    for split, attr in (("train", "dev"), ("test", "test")):
        rows = evaluate_retrieval(encoder, folder, ["none", "whitening"], split=split, approx_index=None).results
        base = report.baseline()
        assert getattr(base["none"], attr) == pytest.approx(rows[0].main.metrics["ndcg@10"], abs=1e-9)
        assert getattr(base["whitening"], attr) == pytest.approx(rows[1].main.metrics["ndcg@10"], abs=1e-9)
    assert report.selected.dev == max(c.dev for c in report.candidates)
    with pytest.warns(UserWarning, match="no qrels/dev.tsv; choosing on qrels/train.tsv instead"):
        fallback = tune(encoder, folder, with_flow=False, progress=False)  # dev is the default split
    assert fallback.select_on == "train" and fallback.selected == report.selected
    (folder / "qrels" / "train.tsv").rename(folder / "qrels" / "dev.tsv")
    with pytest.raises(SentflowError, match="no qrels/train.tsv to select on; use select_on='dev'"):
        tune(encoder, folder, select_on="train")


def test_cli_tune_beir_falls_back_to_train_qrels_and_names_flags(tiny_bert_dir, stsb_slice_dir, tmp_path):
    from sentflow.cli.main import app
    from typer.testing import CliRunner

    folder = tmp_path / "beir"
    write_beir(
        folder, sentflow.load_sts("sts-b", "train", stsb_slice_dir), lambda q: "train" if int(q[1:]) % 2 else "test"
    )
    runner = CliRunner()
    common = ["tune", str(folder), "--model", str(tiny_bert_dir), "--no-flow", "--max-dim", "16"]
    result = runner.invoke(app, common)
    assert result.exit_code == 0, result.output
    assert f"warning: {folder}: no qrels/dev.tsv; choosing on qrels/train.tsv instead" in result.stderr
    assert "chosen on train" in result.stdout
    (folder / "qrels" / "train.tsv").rename(folder / "qrels" / "dev.tsv")
    result = runner.invoke(app, [*common, "--select-on", "train"])
    assert result.exit_code == 1
    assert result.stderr == f"error: {folder}: no qrels/train.tsv to select on; use --select-on dev\n"


def test_transfer_all_and_weighted_mean(encoder, stsb_slice_dir, tmp_path):
    pairs = sentflow.load_sts("sts-b", "test", stsb_slice_dir)
    folder = tmp_path / "STS13-en-test"
    folder.mkdir()
    cut = 70
    for name, rows in (("a", range(cut)), ("b", range(cut, len(pairs)))):
        (folder / f"STS.input.{name}.txt").write_text(
            "".join(f"{pairs.sentences1[i]}\t{pairs.sentences2[i]}\n" for i in rows)
        )
        gold = [f"{pairs.scores[i]}" for i in rows]
        gold[3] = ""  # an unscored pair is skipped
        (folder / f"STS.gs.{name}.txt").write_text("\n".join(gold) + "\n")
    setting = Setting("whitening", 24, 0.25)
    result = transfer(encoder, setting, "sts13", tmp_path)
    keep = [i for i in range(len(pairs)) if i not in (3, cut + 3)]
    first, second = (
        encoder.encode([pairs.sentences1[i] for i in keep]),
        encoder.encode([pairs.sentences2[i] for i in keep]),
    )
    w = sentflow.Whitening(power=0.25).fit(np.concatenate([first, second]))
    rows = w.transform(np.concatenate([first, second]))
    cos, gold = rowwise_cosine(rows[: len(keep)], rows[len(keep) :]), pairs.scores[keep]
    parts = [slice(0, cut - 1), slice(cut - 1, len(keep))]
    rho = [100 * spearmanr(cos[p], gold[p]).statistic for p in parts]
    assert result.n_pairs == len(keep)
    assert result.all == pytest.approx(100 * spearmanr(cos, gold).statistic, abs=1e-4)
    assert result.wmean == pytest.approx((rho[0] * (cut - 1) + rho[1] * (len(keep) - cut + 1)) / len(keep), abs=1e-4)


def test_cli_tune_json_and_outputs(bert, tiny_bert_dir, stsb_slice_dir, tmp_path):
    from sentflow.cli.main import app
    from typer.testing import CliRunner

    runner = CliRunner()
    common = ["tune", "sts-b", "--data-dir", str(stsb_slice_dir), "--model", str(tiny_bert_dir), "--no-flow"]
    common += ["--max-dim", "16"]  # a budget below the size: the choice is a whitening, never none
    result = runner.invoke(app, [*common, "--json", "--out", str(tmp_path / "pipe")])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    expected = tune(bert, "sts-b", data_dir=stsb_slice_dir, max_dim=16, with_flow=False, progress=False)
    assert data == json.loads(json.dumps(expected.to_dict()))
    pipeline = sentflow.load(tmp_path / "pipe")
    X = bert.encode(["a man is playing a guitar", "a dog on the beach"])
    np.testing.assert_allclose(pipeline.transform(X), expected.calibrator.transform(X), atol=1e-5)
    result = runner.invoke(app, [*common, "--out", str(tmp_path / "c.safetensors")])
    assert result.exit_code == 0 and sentflow.load(tmp_path / "c.safetensors").n_components_out_ == 16
    assert "selected: whitening k=16" in result.stdout
    result = runner.invoke(app, [*common, "--select-on", "test"])
    assert result.exit_code == 1 and result.stderr.strip().count("\n") == 0
    assert result.stderr.startswith("error: --select-on test: choose on dev or train")
