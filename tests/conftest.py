"""Shared fixtures: a tiny random BERT saved as a HF directory, and slices of the real STS-B."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import torch

from sentflow.data_root import data_root
from sentflow.tasks.sts import packaged_stsb_dir

if TYPE_CHECKING:
    from hostile_support import Base

SHARED_DATA = data_root()  # $SENTFLOW_DATA, else ../shared/data beside the clone
SENTENCES = [  # for the tiny BERT's word-level vocabulary: lengths 2 to 17 tokens, so batches need padding
    "a man is playing the guitar .",
    "the dog",
    "a girl is brushing her hair with a ball on the beach and the cat is eating .",
    "men",
    "a group of people are running in the street , and a car .",
]
WORDS = (
    "a the man woman girl boy dog cat is are playing eating running guitar ball on in with and of "
    "hair her his styling brushing soccer beach group men people street car . ,"
).split()


@pytest.hookimpl(tryfirst=True)  # before xdist reads the marks (it then appends "@GROUP" to the test ids)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under pytest-xdist (`--dist loadgroup`, the README's test command), the tests of a module that share a
    module-scoped fixture (a trained model, a fitted journey, a cluster) go to one worker as a group, so the fixture is
    built once; every other test is handed out on its own, so long files (the eval smokes, the docs examples) spread
    over the workers. Outside xdist the mark does nothing."""
    for item in items:
        fixtures = getattr(item, "_fixtureinfo", None)
        if fixtures is None or item.get_closest_marker("xdist_group"):
            continue
        if any(d.scope == "module" for defs in fixtures.name2fixturedefs.values() for d in defs):
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::")[0]))


@pytest.fixture(autouse=True, scope="session")
def private_cache(tmp_path_factory):
    """Keep the embedding cache of the test run out of the user's ~/.cache. A session is one xdist worker, and each
    worker has its own tmp_path_factory base, so two workers never write the same cache."""
    import os

    old = os.environ.get("SENTFLOW_CACHE")
    os.environ["SENTFLOW_CACHE"] = str(tmp_path_factory.mktemp("sentflow-cache"))
    yield
    if old is None:
        del os.environ["SENTFLOW_CACHE"]
    else:
        os.environ["SENTFLOW_CACHE"] = old


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory) -> Path:
    """A 2-layer, 32-wide BertModel with a word-level vocabulary, saved with save_pretrained."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    directory = tmp_path_factory.mktemp("tiny-bert")
    vocab = directory / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    tokenizer = BertTokenizerFast(vocab_file=str(vocab), do_lower_case=True)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=3,
        num_attention_heads=2,
        intermediate_size=48,
        max_position_embeddings=128,
    )
    BertModel(config).eval().save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def stsb_slice_dir(tmp_path_factory) -> Path:
    """The first 120 lines of each real STS-B split, in STS-B's own layout."""
    directory = tmp_path_factory.mktemp("stsb-slice")
    for split in ("train", "dev", "test"):
        lines = (packaged_stsb_dir() / f"sts-{split}.csv").read_text(encoding="utf-8").splitlines()[:120]
        (directory / f"sts-{split}.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return directory


@pytest.fixture(scope="module")
def base(tmp_path_factory, tiny_bert_dir) -> Base:
    """The hostile suite's tiny inputs (tests/hostile/), one set per test module."""
    import numpy as np

    import sentflow
    from sentflow.flows import build_model
    from sentflow.flows.checkpoint import save_checkpoint

    root = tmp_path_factory.mktemp("hostile")
    x = root / "x.npy"
    np.save(x, np.random.default_rng(0).standard_normal((60, 4)).astype(np.float32))
    calib = root / "c.safetensors"
    sentflow.Whitening().fit(np.load(x)).save(calib)
    text = root / "in.txt"
    text.write_text("a man is playing the guitar .\nthe dog\na cat on the beach\nmen\na woman with a ball\n")
    ckpt = root / "nice.safetensors"
    save_checkpoint(ckpt, build_model("nice", data_shape=(1, 8, 8), n_bins=17, hidden=8, depth=1, couplings=2))
    from hostile_support import Base

    return Base(root, x, calib, text, tiny_bert_dir, ckpt)
