"""Human-readable tables of evaluation reports (rich), for the terminal."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table


def _table(title: str, columns: list[str]) -> Table:
    table = Table(title=title)
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


def print_retrieval(report) -> None:
    """One row per method and dimension: metrics x100, then index size and speed of each index."""
    title = f"{report.task} | {report.model} | {report.pooling} | {report.n_queries} queries, {report.n_corpus} docs"
    first = report.results[0]
    columns = ["method", "dim", "nDCG@10", "MRR@10", "R@1", "R@10", "R@100", f"{first.main.factory} MB", "q/s"]
    if first.approx is not None:
        columns += [f"{first.approx.factory} nDCG@10", "MB", "q/s"]
    table = _table(title, columns)
    for row in report.results:
        cells = [row.method, str(row.dim), *(f"{v:.2f}" for v in row.main.metrics.values())]
        cells += [f"{row.main.index_bytes / 2**20:.1f}", f"{row.main.qps:,.0f}"]
        if row.approx is not None:
            approx = row.approx
            cells += [f"{approx.metrics['ndcg@10']:.2f}", f"{approx.index_bytes / 2**20:.1f}", f"{approx.qps:,.0f}"]
        table.add_row(*cells)
    Console().print(table)
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
