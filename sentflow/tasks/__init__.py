"""Tasks and data sources: what a data argument names (`sources`, the one classifier), and the STS and retrieval
tasks read from the shipped copy, a directory or the hub.

They sit below streaming, search and evaluation, which all read tasks; scoring lives in `sentflow.evaluation`.
"""
