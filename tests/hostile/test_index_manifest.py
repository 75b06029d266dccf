"""Hostile cases for index.json: every field is required, typed and bounded by its schema, so a missing or malformed
one is one `error:` line from `sentflow search`, never an internal error or silently different scores.

Generated cases; the oracles are `hostile_support`'s (see its docstring).
"""

from __future__ import annotations

import json
import shutil

import pytest
from hostile_support import FEW, assert_ok_or_one_error, assert_one_error, sentflow_cli, strict_json
from hypothesis import given
from hypothesis import strategies as st

SEARCH_SETTINGS = {"rescore", "hnsw"}  # fields whose valid values change how (so what) stage 1 searches


def leaves(value, prefix: str = "") -> list[str]:
    """Dotted paths of every key of a JSON object, nested ones included."""
    if not isinstance(value, dict):
        return []
    found = []
    for key, inner in value.items():
        path = f"{prefix}{key}"
        found += [path, *leaves(inner, path + ".")]
    return found


def edit(manifest: dict, path: str, value=None, delete: bool = False) -> dict:
    copy = json.loads(json.dumps(manifest))
    *parents, last = path.split(".")
    node = copy
    for key in parents:
        node = node[key]
    if delete:
        del node[last]
    else:
        node[last] = value
    return copy


@pytest.fixture(scope="module")
def built(tmp_path_factory, tiny_bert_dir):
    root = tmp_path_factory.mktemp("manifest")
    corpus = root / "corpus.txt"
    corpus.write_text("\n".join(f"the man plays guitar {i}" for i in range(30)) + "\n")
    out = root / "idx"
    run = sentflow_cli("index", corpus, "--out", out, "--model", tiny_bert_dir, "--max-length", "32")
    assert run.code == 0, run.err
    manifest = json.loads((out / "index.json").read_text())
    expected = sentflow_cli("search", out, "the man", "--json")
    assert expected.code == 0, expected.err
    return out, manifest, strict_json(expected.out)


def search_with(built, tmp_path, manifest: dict):
    out, _, _ = built
    copy = tmp_path / "idx"
    shutil.copytree(out, copy)
    (copy / "index.json").write_text(json.dumps(manifest))
    return sentflow_cli("search", copy, "the man", "--json")


def test_the_built_manifest_has_every_required_field(built):
    _, manifest, _ = built
    required = {"format", "quantize", "rescore", "hnsw", "rows", "dim", "pipeline", "files"}
    assert required <= set(manifest) and {"quantizer", "codes", "ids", "rescorer", "rescore_codes"} <= set(
        manifest["files"]
    )


@pytest.mark.parametrize("path", ["format", "quantize", "rescore", "hnsw", "rows", "dim", "pipeline", "files",
                                  "files.quantizer", "files.codes", "files.ids", "files.rescorer",
                                  "files.rescore_codes", "files.codes.sha256", "files.ids.name", "pipeline.model",
                                  "pipeline.pooling", "pipeline.max_length", "pipeline.normalize",
                                  "pipeline.fingerprint"])
def test_a_missing_field_is_one_error(built, tmp_path, path):
    _, manifest, _ = built
    line = assert_one_error(search_with(built, tmp_path, edit(manifest, path, delete=True)))
    assert "index.json" in line or "rescorer" in line


def test_dropping_the_rescoring_files_never_falls_back_to_hamming_scores_silently(built, tmp_path):
    _, manifest, _ = built
    dropped = edit(edit(manifest, "files.rescorer", delete=True), "files.rescore_codes", delete=True)
    line = assert_one_error(search_with(built, tmp_path, dropped))
    assert "need rescorer and rescore_codes files" in line


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)


@given(data=st.data())
@FEW
def test_any_value_in_any_field_is_the_same_result_or_one_error(built, tmp_path_factory, data):
    _, manifest, expected = built
    path = data.draw(st.sampled_from(leaves(manifest)), label="field")
    value = data.draw(JSON_VALUES | st.just("abc"), label="value")
    run = search_with(built, tmp_path_factory.mktemp("case"), edit(manifest, path, value))
    if not assert_ok_or_one_error(run):
        return
    found = strict_json(run.out)  # finite JSON
    if path not in SEARCH_SETTINGS:  # any other change an index accepts leaves its results as they were
        assert found == expected, (path, value)
