"""Helpers shared by the eval scripts: markdown tables written atomically, machine description."""

from __future__ import annotations

import os
import platform
from collections.abc import Sequence
from datetime import date
from pathlib import Path

import torch

from sentflow.files.io import write_atomic

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> str:
    """One line describing where the numbers were measured."""
    cpu = platform.processor() or platform.machine()
    threads = torch.get_num_threads()
    return f"{os.cpu_count()} CPU cores ({cpu}), torch {torch.__version__}, {threads} threads, {date.today()}"


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def write_report(name: str, title: str, sections: Sequence[str]) -> Path:
    """Write eval/results/NAME.md (title, machine line, sections) and echo it."""
    text = f"# {title}\n\nMeasured on {machine()}.\n\n" + "\n\n".join(sections) + "\n"
    path = write_text(RESULTS / f"{name}.md", text)
    print(text)
    return path


def write_text(path: Path, text: str) -> Path:
    """Write a UTF-8 text file atomically."""
    write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return path
