"""The documentation site builds with zero warnings, and the examples on its pages run as written.

Convention for examples on the pages under docs/ (README.md has its own test, tests/test_readme.py):

- every ```python block runs in its own new interpreter (`python -c`, not inside the pytest process, so an import
  done by another block or test cannot make it pass), in a scratch directory;
- every ```bash block runs line by line: each line is a `sentflow ...` command, run in-process through the Typer
  app, and must exit 0;
- a block is left out only when the line right above its opening fence is
  `<!-- docs-test: skip (REASON) -->`, with a non-empty reason (installs packages, needs data that is not in a
  clone, trains for minutes, ...). Other fences (```text, ```console) are output listings and never run.

The examples use only what a clean clone has: the embedded all-MiniLM-L6-v2, STS-B shipped in the package, and
generated arrays; nothing reaches the network.
"""

from __future__ import annotations

import html
import os
import re
import shlex
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = sorted(p for p in DOCS.rglob("*.md") if "hooks" not in p.relative_to(DOCS).parts)
FENCE = re.compile(r"^(?P<indent>\s*)```(?P<lang>[\w-]*)\s*$")
MARKER = re.compile(r"^\s*<!--\s*docs-test:(?P<body>.*?)-->\s*$")
SKIP = re.compile(r"^\s*skip\s*\((?P<reason>[^()]*\S[^()]*)\)\s*$")
RUNNABLE = {"python", "bash"}


@dataclass(frozen=True)
class Block:
    page: str
    line: int
    lang: str
    code: str
    skip: str | None  # the reason, when the block is marked skipped

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"


def blocks(page: Path) -> list[Block]:
    """The fenced code blocks of one page, with the skip marker right above each, if any."""
    found: list[Block] = []
    lines = page.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening or not opening["lang"]:
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == "```")
        marker = MARKER.match(lines[i - 1]) if i else None
        skip = SKIP.match(marker["body"]) if marker else None
        code = textwrap.dedent("\n".join(lines[i + 1 : end])) + "\n"
        name = str(page.relative_to(ROOT))
        found.append(Block(name, i + 1, opening["lang"], code, skip["reason"].strip() if skip else None))
        i = end + 1
    return found


ALL = [block for page in PAGES for block in blocks(page)]
EXAMPLES = [block for block in ALL if block.lang in RUNNABLE and block.skip is None]


def test_pages_have_examples():
    assert len(PAGES) >= 20
    assert sum(block.lang == "python" for block in EXAMPLES) >= 10


def test_every_marker_is_a_skip_with_a_reason_above_a_runnable_block():
    for page in PAGES:
        lines = page.read_text(encoding="utf-8").splitlines()
        for number, line in enumerate(lines, 1):
            marker = MARKER.match(line)
            if not marker:
                continue
            where = f"{page.relative_to(ROOT)}:{number}"
            assert SKIP.match(marker["body"]), f"{where}: write <!-- docs-test: skip (REASON) -->"
            fence = FENCE.match(lines[number]) if number < len(lines) else None
            assert fence and fence["lang"] in RUNNABLE, f"{where}: the marker must sit right above a python/bash fence"


def run_shell(code: str) -> None:
    from sentflow.cli.main import app
    from typer.testing import CliRunner

    for line in code.splitlines():
        words = shlex.split(line, comments=True)
        if not words:
            continue
        assert words[0] == "sentflow", f"not a sentflow command (mark the block skipped, with a reason): {line}"
        result = CliRunner().invoke(app, words[1:])
        assert result.exit_code == 0, f"{line}\n{result.output}"


def run_python(block: Block, directory: Path) -> None:
    """The block as a script of its own in a new interpreter (the test run's environment, its cache included)."""
    done = subprocess.run(
        [sys.executable, "-c", block.code], cwd=directory, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, f"{block.id} failed:\n{done.stderr[-3000:]}"


@pytest.mark.slow
@pytest.mark.parametrize("block", EXAMPLES, ids=[block.id for block in EXAMPLES])
def test_example_runs(block, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    if block.lang == "python":
        run_python(block, tmp_path)
    else:
        run_shell(block.code)


def test_mkdocs_build_strict(tmp_path):
    """No broken link, anchor, include or reference, and no griffe docstring warning: any warning fails. Built as
    `VENV/bin/python -m mkdocs` runs without activating the venv: PATH holds only the system's directories."""
    site = tmp_path / "site"
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1", "PATH": os.defpath},
        capture_output=True,
        text=True,
        timeout=300,
    )
    log = done.stdout + done.stderr
    assert done.returncode == 0, log
    assert not re.search(r"^(WARNING|ERROR)\b", log, flags=re.M), log
    # mkdocs-typer2 renders nothing (and warns about nothing) when it cannot import the app: check the commands came
    cli = (site / "cli-reference" / "index.html").read_text(encoding="utf-8")
    for command in ("sentflow tune", "sentflow eval sts", "sentflow flows train", "sentflow index"):
        assert command in cli, command
    for name, summary in command_summaries():  # the list of commands has them whole, not cut at 45 characters
        rendered = re.sub(r"`([^`]*)`", r"<code>\1</code>", html.escape(summary, quote=False))
        assert f"<li><code>{name}</code>: {rendered}</li>" in cli, summary
    api = (site / "reference" / "calibration" / "index.html").read_text(encoding="utf-8")
    assert "sentflow.calibration.whitening.Whitening" in api
    # the result tables are included, not copied: a row of a committed table appears on its page
    sts = (site / "results" / "flow-vs-whitening" / "index.html").read_text(encoding="utf-8")
    assert "78.59 ± 0.15" in sts
    assert (site / "eval" / "results" / "diagnose_cls_spectrum.png").is_file()


def command_summaries() -> list[tuple[str, str]]:
    """(name, the first paragraph of its help as its docstring has it) of every top-level command."""
    import typer
    from sentflow.cli.main import app

    commands = typer.main.get_command(app).commands.items()  # type: ignore[attr-defined]
    return [(n, " ".join(textwrap.dedent(c.help or "").strip().split("\n\n")[0].split())) for n, c in commands]


def public_names() -> list[tuple[str, str]]:
    """(module, name) of every public name: sentflow.__all__, sentflow.flows.__all__ and the integrations."""
    import sentflow
    import sentflow.flows as flows

    names = [("sentflow", name) for name in sentflow.__all__ if name != "__version__"]
    names += [(f"sentflow.flows.{flows._WHERE[name]}", name) for name in flows.__all__ if name in flows._WHERE]
    names += [("sentflow.integrations.mteb", n) for n in ("MtebModel", "beir_task", "stsb_task", "evaluate")]
    names += [("sentflow.integrations.chroma", "ChromaEmbeddingFunction")]
    names += [("sentflow.integrations.langchain", "LangchainEmbeddings")]
    return names


def test_every_public_name_has_a_docstring():
    """Read statically by griffe, as mkdocstrings does: a public class, method or function without a docstring would
    not render (constants are documented by the prose of their module)."""
    import griffe

    package = griffe.load("sentflow", search_paths=[str(ROOT)], allow_inspection=False)
    missing = []
    for module, name in public_names():
        parent = package
        for part in module.split(".")[1:]:
            parent = parent.members[part]
        obj = parent.members[name]
        obj = obj.final_target if obj.is_alias else obj
        if obj.is_attribute:
            continue
        members = [(name, obj)]
        if obj.is_class:  # and its public methods
            members += [(f"{name}.{m}", f) for m, f in obj.members.items() if not m.startswith("_") and f.is_function]
        for label, member in members:
            if not member.docstring or not member.docstring.value.strip():
                missing.append(f"{module}.{label}")
    assert not missing, f"public names without a docstring: {missing}"
