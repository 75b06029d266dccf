"""Human-readable tables of evaluation reports (rich), for the terminal."""

from __future__ import annotations

import unicodedata

from rich.console import Console
from rich.table import Table
from rich.text import Text

_HIDDEN = ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp")  # controls, format characters, line breaks, unassigned


def printable(text: str) -> Text:
    """`text` for a terminal: every control, format and line-separator character (escape sequences, bidi
    overrides, U+2028) shown as a Python escape such as `\\x1b`, and no rich markup interpreted."""
    shown = "".join(_escape(c) if unicodedata.category(c) in _HIDDEN else c for c in text)
    return Text(shown)


def _escape(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def _table(title: str, columns: list[str]) -> Table:
    table = Table(title=printable(title))
    for i, column in enumerate(columns):
        table.add_column(column, justify="left" if i == 0 else "right")
    return table


def print_sts(report: dict) -> None:
    """One row per method: dimension, Spearman and Pearson x100, fit seconds."""
    title = f"{report['task']} test | {report['model']} | {report['pooling']} | fit on {report['fit_on']}"
    table = _table(title, ["method", "dim", "Spearman x100", "Pearson x100", "fit s"])
    for row in report["results"]:
        table.add_row(
            row["method"],
            str(row["dim"]),
            f"{row['spearman']:.2f}",
            f"{row['pearson']:.2f}",
            f"{row['fit_seconds']:.2f}",
        )
    Console().print(table)


def print_retrieval(report, wide: bool = False) -> None:
    """One row per method and dimension. By default the columns that fit 80 characters (nDCG@10, recall@100, the
    scored index's MiB and q/s, the approximate index's nDCG@10); `wide` adds MRR@10, R@1, R@10 and its MiB, q/s."""
    title = f"{report.task} | {report.model} | {report.pooling} | {report.n_queries} queries, {report.n_corpus} docs"
    first = report.results[0]
    metrics = ["ndcg@10", "mrr@10", "recall@1", "recall@10", "recall@100"] if wide else ["ndcg@10", "recall@100"]
    names = {"ndcg@10": "nDCG@10", "mrr@10": "MRR@10", "recall@1": "R@1", "recall@10": "R@10", "recall@100": "R@100"}
    columns = ["method", "dim", *(names[m] for m in metrics), "MiB", "q/s"]
    if first.approx is not None:
        columns += ["HNSW nDCG" if "HNSW" in first.approx.factory else "approx nDCG"]
        columns += ["MiB", "q/s"] if wide else []
    table = _table(title, columns)
    for row in report.results:
        cells = [row.method, str(row.dim), *(f"{row.main.metrics[m]:.2f}" for m in metrics)]
        cells += [f"{row.main.index_bytes / 2**20:.1f}", f"{row.main.qps:,.0f}"]
        if row.approx is not None:
            approx = row.approx
            cells += [f"{approx.metrics['ndcg@10']:.2f}"]
            cells += [f"{approx.index_bytes / 2**20:.1f}", f"{approx.qps:,.0f}"] if wide else []
        table.add_row(*cells)
    Console().print(table)
    if not wide:
        hint = f"(--wide for MRR@10, R@1, R@10 and the costs of {first.main.factory} and the approximate index)"
        Console(stderr=True).print(hint)
    if report.compact:
        print_compact(report)


def print_compact(report) -> None:
    """One row per compact code (sentflow's specs, then the baselines): bytes per document and quality."""
    table = _table("compact codes", ["codes", "dim", "RAM B", "disk B", "nDCG@10", "R@100", "q/s"])
    for row in report.compact:
        name = row.baseline or f"{row.method} {row.quantize}"
        cells = [name, str(row.dim), f"{row.ram_bytes_per_doc:g}", f"{row.disk_bytes_per_doc:g}"]
        cells += [f"{row.metrics['ndcg@10']:.2f}", f"{row.metrics['recall@100']:.2f}", f"{row.qps:,.0f}"]
        table.add_row(*cells)
    Console().print(table)
