"""Evaluation: the metrics of STS and retrieval tasks (the tasks are in `sentflow.tasks`), tuning and diagnostics."""
