"""`sentflow tune` and `sentflow diagnose`: whether and how to calibrate (being written)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the guidance commands to the main app."""
