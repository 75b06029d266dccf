"""Adapters to the tools where embeddings are used: one module per tool, each needing its own extra.

- `sentflow.integrations.mteb` (extra `mteb`): `MtebModel`, `beir_task`, `stsb_task`, `evaluate`.
- `sentflow.integrations.chroma` (extra `chroma`): `ChromaEmbeddingFunction`.
- `sentflow.integrations.langchain` (extra `langchain`): `LangchainEmbeddings`.

Nothing here is imported by `import sentflow`; importing a module without its extra raises one SentflowError line
naming the install command.
"""
