"""Bad paths and flags answer before any heavy import: each command below runs in a new interpreter and must print
its one `error:` line and exit 1 with neither torch nor numpy loaded (the oracle is `sys.modules`, not a clock)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

PROBE = """\
import json, sys
from sentflow.cli.main import main
sys.argv = ["sentflow", *json.loads(sys.argv[1])]
try:
    main()
except SystemExit as done:
    print(json.dumps({"code": done.code, "heavy": sorted({"torch", "numpy"} & set(sys.modules))}))
"""


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A text corpus, a directory that is neither a pipeline nor an index, and a (hand-made) pipeline and index."""
    root = tmp_path_factory.mktemp("prechecks")
    (root / "corpus.txt").write_text("a man\nthe dog\n", encoding="utf-8")
    (root / "plain").mkdir()
    (root / "pipe").mkdir()
    (root / "pipe" / "pipeline.json").write_text("{}", encoding="utf-8")  # the prechecks only look for the file
    (root / "built").mkdir()
    (root / "built" / "index.json").write_text("{}", encoding="utf-8")
    return root


CASES = {
    "search a directory that is no index": (
        ["search", "plain", "a query"],
        "plain: not a sentflow index directory (no index.json)",
    ),
    "search --queries missing": (["search", "built", "--queries", "q.txt"], "q.txt: no such file or directory"),
    "encode a missing file": (["encode", "missing.txt", "--out", "x.npy"], "missing.txt: no such file or directory"),
    "index a missing corpus": (["index", "nope.txt", "--out", "idx"], "nope.txt: no such file or directory"),
    "index --pipeline that is none": (
        ["index", "corpus.txt", "--pipeline", "plain", "--out", "idx"],
        "plain: not a sentflow pipeline directory (no pipeline.json)",
    ),
    "index --pipeline with --max-length": (
        ["index", "corpus.txt", "--pipeline", "pipe", "--max-length", "8", "--out", "idx"],
        "--max-length: the pipeline pipe fixes these; leave them out",
    ),
    "index --pipeline with --model": (
        ["index", "corpus.txt", "--pipeline", "pipe", "--model", "m", "--out", "idx"],
        "--model: the pipeline pipe fixes these; leave them out",
    ),
    "index --quantize typo": (
        ["index", "corpus.txt", "--quantize", "bianry", "--out", "idx"],
        "unknown quantizer 'bianry'; use none, int8[:P], int4[:P], binary, itq:BITS, pca:BITS, rabitq or rabitq:BITS",
    ),
    "index --quantize with a bad number": (
        ["index", "corpus.txt", "--quantize", "int8:1.2.3", "--out", "idx"],
        "int8:P (a percentile): '1.2.3' is not a number from 0 to 100 (ASCII digits and '.')",
    ),
    "eval retrieval --quantize typo": (
        ["eval", "retrieval", "corpus.txt", "--quantize", "binary,itq:12x"],
        "itq:BITS: '12x' is not a whole number from 1 to 65536 (ASCII digits only)",
    ),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_bad_arguments_answer_before_torch_loads(files, case):
    args, message = CASES[case]
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(args)], cwd=files, capture_output=True, text=True, timeout=300
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"code": 1, "heavy": []}, done.stderr
    assert done.stderr.strip().splitlines() == [f"error: {message}"]
    assert not (files / "idx").exists() and not (files / "x.npy").exists()
