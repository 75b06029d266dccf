"""Evaluation: STS and retrieval tasks, their metrics, tuning and diagnostics."""
