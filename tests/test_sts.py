"""STS data: the packaged STS-B, robust parsing, the SentEval/SICK readers, the hub path, the metric."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import SHARED_DATA
from scipy.stats import rankdata

from sentflow import SentflowError, evaluate_sts, load_sts
from sentflow.tasks.sts import packaged_stsb_dir, read_stsb_file


def test_packaged_stsb_has_the_published_sizes_and_licence():
    assert [len(load_sts("sts-b", s)) for s in ("train", "dev", "test")] == [5749, 1500, 1379]
    assert (packaged_stsb_dir() / "LICENSE.txt").is_file()
    test = load_sts("sts-b", "test")
    assert test.sentences1[0] == "A girl is styling her hair." and test.scores[0] == 2.5
    assert test.scores.min() >= 0 and test.scores.max() <= 5


def test_lines_with_extra_fields_keep_the_right_sentences(tmp_path):
    path = tmp_path / "sts.csv"
    path.write_text("g\tf\t2012\t1\t3.2\tFirst one.\tSecond one.\tsource-a\tsource-b\n", encoding="utf-8")
    pairs = read_stsb_file(path)
    assert (pairs.sentences1, pairs.sentences2, list(pairs.scores)) == (["First one."], ["Second one."], [3.2])


@pytest.mark.parametrize(
    "line, message",
    [
        ("g\tf\t2012\t1\t3.2\tonly one sentence", "line 2: expected at least 7"),
        ("g\tf\ty\t1\tx\ta\tb", "line 2: score: 'x': Input should be a valid number"),
    ],
)
def test_malformed_lines_name_file_and_line(tmp_path, line, message):
    path = tmp_path / "bad.csv"
    path.write_text("g\tf\t2012\t1\t1.0\ta\tb\n" + line + "\n", encoding="utf-8")
    with pytest.raises(SentflowError, match=message):
        read_stsb_file(path)


@pytest.mark.skipif(not (SHARED_DATA / "sts12-16").is_dir(), reason=f"no {SHARED_DATA / 'sts12-16'} (SENTFLOW_DATA)")
def test_senteval_sizes_match_the_published_counts():
    sizes = [len(load_sts(f"sts1{i}", "test", SHARED_DATA / "sts12-16")) for i in range(2, 7)]
    assert sizes == [3108, 1500, 3750, 3000, 1186]


@pytest.mark.skipif(not (SHARED_DATA / "sick").is_dir(), reason=f"no {SHARED_DATA / 'sick'} (SENTFLOW_DATA)")
def test_sick_without_header():
    assert len(load_sts("sick-r", "test", SHARED_DATA / "sick")) == 4927


def test_hub_path_on_a_locally_saved_dataset(tmp_path):
    datasets = pytest.importorskip("datasets")
    rows = {"sentence1": ["a b", "c d"], "sentence2": ["a c", "d e"], "score": [0.8, 0.1]}
    for split in ("train", "validation", "test"):
        datasets.Dataset.from_dict(rows).to_parquet(str(tmp_path / f"{split}.parquet"))
    pairs = load_sts("sts-b", "dev", hub=str(tmp_path))
    assert pairs.sentences1 == ["a b", "c d"] and list(pairs.scores) == [0.8, 0.1]


def test_evaluate_sts_against_a_rank_correlation_by_hand():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((200, 16)), rng.standard_normal((200, 16))
    gold = rng.random(200) * 5
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    r_cos, r_gold = rankdata(cos) - 100.5, rankdata(gold) - 100.5
    by_hand = 100 * (r_cos @ r_gold) / np.sqrt((r_cos @ r_cos) * (r_gold @ r_gold))
    result = evaluate_sts(a, b, gold)
    assert result["spearman"] == pytest.approx(by_hand, abs=1e-9)
    assert result["pearson"] == pytest.approx(100 * np.corrcoef(cos, gold)[0, 1], abs=1e-9)
    with pytest.raises(SentflowError, match="lengths differ"):
        evaluate_sts(a, b[:10], gold)


def test_senteval_scores_stay_with_their_pairs_across_blank_and_unscored_lines(tmp_path):
    (tmp_path / "STS.input.x.txt").write_text("a b\tc d\n\ne f\tg h\ni j\tk l\n", encoding="utf-8")
    (tmp_path / "STS.gs.x.txt").write_text("1.0\n\n3.0\n\n", encoding="utf-8")
    pairs = load_sts("sts12", "test", tmp_path)
    assert pairs.sentences1 == ["a b", "e f"] and list(pairs.scores) == [1.0, 3.0]


def test_only_newlines_separate_rows(tmp_path):
    path = tmp_path / "sts-test.csv"
    path.write_text("g\tf\t2012\t1\t1.0\tone\x1cstill one\tb\r\ng\tf\t2012\t2\t2.0\tc\td\n", encoding="utf-8")
    pairs = read_stsb_file(path)
    assert pairs.sentences1 == ["one\x1cstill one", "c"] and pairs.sentences2 == ["b", "d"]


def test_unknown_tasks_and_undefined_correlations_are_one_line_errors():
    with pytest.raises(SentflowError, match=r"unknown STS task 'sts-x'; choose one of sts-b, sts12"):
        load_sts("sts-x", "test")
    same = np.ones((5, 3))
    with pytest.raises(SentflowError, match="all cosine scores are equal"):
        evaluate_sts(same, same, np.arange(5.0))
