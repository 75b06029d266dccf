"""mkdocs hooks: serve the benchmark plots from eval/results and nest the committed result tables.

Result pages include `eval/results/*.md` with pymdownx.snippets (`--8<-- "eval/results/NAME.md"`), so a re-run of a
benchmark changes the site with no hand copy. Each of those files starts with its own `# title`; a page includes
it inside one of its `##` sections, so the title becomes a bold line and the other headings move one level down.
The plots in `eval/results/*.png` are added to the site under the same path, so a page links
`eval/results/NAME.png`.
"""

from __future__ import annotations

import atexit
import os
import re
import shlex
import shutil
import sys
import tempfile
from pathlib import Path

from markdown import Extension
from markdown.preprocessors import Preprocessor
from markdown.treeprocessors import Treeprocessor
from markdown.util import AtomicString
from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[2]
RESULTS = "eval/results"
INCLUDE = re.compile(r'^\s*--8<--\s+"(eval/results/[^"]+\.md)"\s*$')
START, END = "<!-- sentflow:included -->", "<!-- sentflow:end-included -->"
FENCE = re.compile(r"^\s*(```|~~~)")


class _MarkIncludes(Preprocessor):
    """Runs before snippets: brackets every results include with markers."""

    def run(self, lines: list[str]) -> list[str]:
        out: list[str] = []
        for line in lines:
            out.extend([START, line, END] if INCLUDE.match(line) else [line])
        return out


class _NestIncludes(Preprocessor):
    """Runs after snippets: nests each included file in the page section that includes it, then drops the markers.

    The file's `# title` becomes a bold line (the page's own `##` heading names the section, so the title adds no
    second heading with the same words to the table of contents), and every other heading moves one level down.
    """

    def run(self, lines: list[str]) -> list[str]:
        out: list[str] = []
        depth, fenced, titled = 0, False, False
        for line in lines:
            if line == START:
                depth, titled = depth + 1, False
            elif line == END:
                depth -= 1
            else:
                if FENCE.match(line):
                    fenced = not fenced
                elif depth and not fenced and re.match(r"^# ", line) and not titled:
                    line, titled = f"**{line[2:].strip()}**", True
                elif depth and not fenced and re.match(r"^#{1,5} ", line):
                    line = "#" + line
                out.append(line)
        return out


class _TyperReference(Treeprocessor):
    """Runs before inline parsing and the table of contents: makes mkdocs-typer2's CLI reference read as a page.

    mkdocs-typer2 renders its block with a plain Markdown instance (no fenced code) and inserts the HTML tree into the
    page. So: its code stays literal (the page's inline parsing would read a usage line such as
    `sentflow tune [OPTIONS] [task]` as a reference link); its ```console usage fences, which came out as inline
    code, become code blocks; and its headings move one level down, under the page's own title.
    """

    def run(self, root) -> None:
        for div in root.iter("div"):
            if "typer-docs" not in (div.get("class") or "").split():
                continue
            for code in div.iter("code"):
                code.text = AtomicString(code.text or "")
            for p in div.iter("p"):
                children = list(p)
                if len(children) == 1 and children[0].tag == "code" and not (p.text or "").strip():
                    text = children[0].text or ""
                    if text.startswith("console"):
                        p.tag = "pre"
                        children[0].text = AtomicString(text[len("console") :].strip())
            for heading in [h for h in div.iter() if h.tag in ("h1", "h2", "h3", "h4", "h5")]:
                heading.tag = f"h{int(heading.tag[1]) + 1}"


class NestResultTables(Extension):
    """The two preprocessors around pymdownx.snippets (priority 32), and the CLI reference's literal code."""

    def extendMarkdown(self, md) -> None:  # noqa: N802 (Markdown's API)
        md.preprocessors.register(_MarkIncludes(md), "sentflow_mark_includes", 33)
        md.preprocessors.register(_NestIncludes(md), "sentflow_nest_includes", 31)
        md.treeprocessors.register(_TyperReference(md), "sentflow_typer_reference", 25)


def on_config(config):
    """Register the heading nesting for included result tables; let mkdocs-typer2 run `typer` and import `cli.main`.

    mkdocs-typer2 runs `typer cli.main utils docs` in a subprocess, which imports the app by module name: the
    repository root goes on that subprocess's PYTHONPATH, so the CLI reference builds from a plain clone too. The
    `typer` it runs is found on PATH, where a venv's own is only once the venv is activated (and a venv with system
    site-packages has none): a `typer` that runs `python -m typer` with mkdocs' own interpreter goes first on PATH,
    so the build works from `VENV/bin/python -m mkdocs` without activating anything.
    """
    paths = [str(ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    os.environ["PATH"] = os.pathsep.join([_typer_shim(), os.environ.get("PATH", "")])
    config.markdown_extensions.append(NestResultTables())
    return config


def _typer_shim() -> str:
    """A private directory holding a `typer` that is this interpreter's `python -m typer` (removed at exit)."""
    directory = tempfile.mkdtemp(prefix="sentflow-docs-typer-")
    atexit.register(shutil.rmtree, directory, True)
    shim = Path(directory) / "typer"
    shim.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m typer "$@"\n', encoding="utf-8")
    shim.chmod(0o755)
    return directory


def on_files(files: Files, config) -> Files:
    """Add every plot of eval/results to the site as `eval/results/NAME.png`."""
    for png in sorted((ROOT / RESULTS).glob("*.png")):
        files.append(File.generated(config, f"{RESULTS}/{png.name}", abs_src_path=str(png)))
    return files
