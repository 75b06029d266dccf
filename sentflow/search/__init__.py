"""Search and exports: faiss indexes and the sentence-transformers export."""
