"""Helpers shared by the eval scripts: markdown tables written atomically, machine description."""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Sequence
from datetime import date
from pathlib import Path

import torch

from sentflow.files.io import write_atomic

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> str:
    """One line describing where the numbers were measured, the CPU's model and AVX-512 or not included."""
    cpu = cpu_name()
    threads = torch.get_num_threads()
    return f"{os.cpu_count()} CPU cores ({cpu}), torch {torch.__version__}, {threads} threads, {date.today()}"


def cpu_name() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo) and whether it has AVX-512, for tables whose speed depends on it."""
    try:
        info = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return platform.processor() or platform.machine()
    names = [line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")]
    flags = next((line for line in info.splitlines() if line.startswith("flags")), "")
    return f"{names[0] if names else platform.machine()}, {'AVX-512' if ' avx512f' in flags else 'no AVX-512'}"


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


def publish(name: str, title: str, sections: Sequence[str], smoke: bool) -> Path | None:
    """write_report, or with `smoke` only print the report (a --smoke run writes nothing into eval/results)."""
    if not smoke:
        return write_report(name, title, sections)
    print(f"# {title} (smoke run, not written)\n\n" + "\n\n".join(sections))
    return None


def sts_slice(folder: Path, lines: int) -> Path:
    """FOLDER holding the first `lines` lines of each packaged STS-B split: the tiny data of --smoke runs."""
    from sentflow.tasks.sts import SPLITS, packaged_stsb_dir

    for split in SPLITS:
        head = (packaged_stsb_dir() / f"sts-{split}.csv").read_text(encoding="utf-8").splitlines()[:lines]
        (folder / f"sts-{split}.csv").write_text("\n".join(head) + "\n", encoding="utf-8")
    return folder


def beir_slice(beir_dir: Path, out: Path, n_qrels: int = 8, n_extra_docs: int = 40) -> Path:
    """A small BEIR folder under `out`: the first test qrels, their queries and documents plus the first other
    documents (the tiny retrieval data of --smoke runs)."""
    qrels_lines = (beir_dir / "qrels" / "test.tsv").read_text(encoding="utf-8").splitlines()[: n_qrels + 1]
    judged = [line.split("\t") for line in qrels_lines[1:]]
    docs, queries = {d for _, d, _ in judged}, {q for q, _, _ in judged}

    def keep(path: Path, wanted: set[str], first: int) -> str:
        lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        return "".join(line + "\n" for i, line in enumerate(lines) if i < first or json.loads(line)["_id"] in wanted)

    small = out / beir_dir.name
    (small / "qrels").mkdir(parents=True)
    (small / "corpus.jsonl").write_text(keep(beir_dir / "corpus.jsonl", docs, n_extra_docs), encoding="utf-8")
    (small / "queries.jsonl").write_text(keep(beir_dir / "queries.jsonl", queries, 0), encoding="utf-8")
    (small / "qrels" / "test.tsv").write_text("\n".join(qrels_lines) + "\n", encoding="utf-8")
    return small


def write_text(path: Path, text: str) -> Path:
    """Write a UTF-8 text file atomically."""
    write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return path
