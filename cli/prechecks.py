"""Checks of command-line arguments that need no model, torch or numpy, run before a command's heavy imports so a
bad path or flag answers at once (the library checks the same again when it runs: these only come first)."""

from __future__ import annotations

from pathlib import Path

import typer

from sentflow.errors import SentflowError

from .common import typed


def existing(path: Path) -> Path:
    """`path` exists (a file or a directory)."""
    if not path.exists():
        raise SentflowError(f"{path}: no such file or directory")
    return path


def sentflow_directory(path: Path, marker: str, kind: str) -> Path:
    """`path` is a directory written by sentflow: it holds `marker` (pipeline.json, index.json)."""
    if not (path / marker).is_file():
        raise SentflowError(f"{path}: not a sentflow {kind} directory (no {marker})")
    return path


def pipeline_fixes(ctx: typer.Context, pipeline: Path | None, names: tuple[str, ...]) -> None:
    """Refuse encoder options the user gave beside --pipeline, which fixes them (never silently ignored)."""
    if pipeline is None:
        return
    sentflow_directory(pipeline, "pipeline.json", "pipeline")
    given = [f"--{name.replace('_', '-')}" for name in names if typed(ctx, name)]
    if given:
        raise SentflowError(f"{', '.join(given)}: the pipeline {pipeline} fixes these; leave them out")


def quantize_specs(specs: str | None) -> None:
    """Every comma-separated compact-code spec in `specs` parses (its kind and number; widths are checked later)."""
    from sentflow.search.specs import parse_spec

    for spec in (specs or "").split(","):
        if spec.strip():
            parse_spec(spec.strip())
