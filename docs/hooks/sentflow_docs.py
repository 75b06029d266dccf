"""mkdocs hooks: serve the benchmark plots from eval/results and nest the committed result tables.

Result pages include `eval/results/*.md` with pymdownx.snippets (`--8<-- "eval/results/NAME.md"`), so a re-run of a
benchmark changes the site with no hand copy. Each of those files starts with its own `# title`; a page includes
it inside one of its `##` sections, so its headings move two levels down (`#` -> `###`, ...). The plots in
`eval/results/*.png` are added to the site under the same path, so a page links `eval/results/NAME.png`.
"""

from __future__ import annotations

import os
import re
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
    """Runs after snippets: two more `#` on each heading between the markers, then drops the markers."""

    def run(self, lines: list[str]) -> list[str]:
        out: list[str] = []
        depth, fenced = 0, False
        for line in lines:
            if line == START:
                depth += 1
            elif line == END:
                depth -= 1
            else:
                if FENCE.match(line):
                    fenced = not fenced
                elif depth and not fenced and re.match(r"^#{1,4} ", line):
                    line = "##" + line
                out.append(line)
        return out


class _LiteralTyperCode(Treeprocessor):
    """Runs before inline parsing: the code in mkdocs-typer2's CLI reference stays literal.

    mkdocs-typer2 renders its block with a plain Markdown instance and inserts the HTML tree into the page, so the
    page's inline parsing would read a usage line such as `sentflow tune [OPTIONS] [task]` as a reference link.
    """

    def run(self, root) -> None:
        for div in root.iter("div"):
            if "typer-docs" in (div.get("class") or "").split():
                for code in div.iter("code"):
                    code.text = AtomicString(code.text or "")


class NestResultTables(Extension):
    """The two preprocessors around pymdownx.snippets (priority 32), and the CLI reference's literal code."""

    def extendMarkdown(self, md) -> None:  # noqa: N802 (Markdown's API)
        md.preprocessors.register(_MarkIncludes(md), "sentflow_mark_includes", 33)
        md.preprocessors.register(_NestIncludes(md), "sentflow_nest_includes", 31)
        md.treeprocessors.register(_LiteralTyperCode(md), "sentflow_literal_typer_code", 25)


def on_config(config):
    """Register the heading nesting for included result tables; let mkdocs-typer2 import `cli.main`.

    mkdocs-typer2 runs `typer cli.main utils docs` in a subprocess, which imports the app by module name: the
    repository root goes on that subprocess's PYTHONPATH, so the CLI reference builds from a plain clone too.
    """
    paths = [str(ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    config.markdown_extensions.append(NestResultTables())
    return config


def on_files(files: Files, config) -> Files:
    """Add every plot of eval/results to the site as `eval/results/NAME.png`."""
    for png in sorted((ROOT / RESULTS).glob("*.png")):
        files.append(File.generated(config, f"{RESULTS}/{png.name}", abs_src_path=str(png)))
    return files
