"""The README's Python example runs as written (in a scratch directory), and what it points to exists.

The README keeps one short example; the examples it used to hold now live on the documentation pages, where
tests/test_docs.py runs every one of them.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
TEXT = README.read_text(encoding="utf-8")
BLOCKS = re.findall(r"```python\n(.*?)```", TEXT, flags=re.S)


def test_readme_has_examples():
    assert len(BLOCKS) >= 1


def test_readme_links_and_sources_exist():
    links = re.findall(r"\]\(((?!https?://)[^)#]+)(?:#[^)]*)?\)", TEXT)
    assert links, "the README links to the documentation pages"
    for link in links:
        assert (ROOT / link).is_file(), link
    for source in re.findall(r"`(eval/results/[\w.-]+\.md)`", TEXT):
        assert (ROOT / source).is_file(), source


def test_readme_set_up_commands():
    """The two set-up commands: one installs and runs the main job, one installs and runs the tests."""
    assert "python3 -m pip install torch==2.13.0 -e . && sentflow eval sts-b --methods none,whitening,flow" in TEXT
    test_command = "python3 -m pytest -q -n auto --dist loadgroup"
    assert f'python3 -m pip install torch==2.13.0 -e ".[dev]" && {test_command}\n' in TEXT
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")  # CI runs the README's test command, not its own
    assert f"\n{test_command}\n" in ci


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exec(compile(BLOCKS[index], f"README.md example {index + 1}", "exec"), {"__name__": "__readme__"})
