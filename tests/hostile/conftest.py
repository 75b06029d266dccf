"""The hostile suite's shared tiny inputs, one set per test module."""

from __future__ import annotations

import numpy as np
import pytest
from hostile_support import Base

import sentflow


@pytest.fixture(scope="module")
def base(tmp_path_factory, tiny_bert_dir) -> Base:
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
    return Base(root, x, calib, text, tiny_bert_dir, ckpt)
