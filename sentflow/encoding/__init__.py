"""Encoding: text to sentence vectors (HF models, pooling, ONNX backend, GloVe, embedding cache)."""
