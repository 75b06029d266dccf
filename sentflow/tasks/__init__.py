"""Tasks and data: STS pairs, STS tasks and retrieval tasks, read from the shipped copy, a directory or the hub.

They sit below evaluation, search and streaming, which all read tasks: scoring lives in `sentflow.evaluation`.
"""
