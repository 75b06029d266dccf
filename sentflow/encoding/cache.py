"""On-disk cache of embeddings keyed by model, pooling, max length, backend and the texts' hash."""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from sentflow.errors import SentflowError
from sentflow.files.io import file_hash, first_line, save_npy, write_atomic
from sentflow.files.npy import load_npy


def default_cache_dir() -> Path:
    """$SENTFLOW_CACHE, else $XDG_CACHE_HOME/sentflow, else ~/.cache/sentflow."""
    if os.environ.get("SENTFLOW_CACHE"):
        return Path(os.environ["SENTFLOW_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "sentflow"


def model_fingerprint(model_path: str) -> str:
    """Identify a model: its name, plus config and weight sizes/mtimes for a local directory."""
    path = Path(model_path)
    if not path.is_dir():
        return model_path
    parts = [str(path)]
    for f in sorted(path.iterdir()):
        if f.is_file() and (f.suffix in (".json", ".safetensors", ".bin") or f.name == "vocab.txt"):
            stat = f.stat()
            parts.append(f"{f.name}:{stat.st_size}:{stat.st_mtime_ns}")
    return "|".join(parts)


def spec_digest(spec: object, length: int = 32) -> str:
    """A short sha256 of a JSON-able spec (keys sorted): what names a cache entry."""
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:length]


def graph_file(kind: str, model_path: str, tag: str, outputs: Sequence[str], name: str, directory: Path | None) -> Path:
    """Where an exported graph of kind `kind` ("onnx", "openvino") is cached: named by the model's fingerprint,
    the graph's `tag` (precision, recipe, tool versions) and its outputs; `name` ends the file name."""
    spec = {"model": model_fingerprint(model_path), "graph": tag, "outputs": list(outputs)}
    return (directory or _graph_directory(kind)) / f"{spec_digest(spec)}-{name}"


def _graph_directory(kind: str) -> Path:
    """The cache folder of exported graphs; a file in the way is the cache setting's fault, not the model's."""
    root = default_cache_dir()
    for folder in (root, root / kind):
        if folder.exists() and not folder.is_dir():
            raise SentflowError(
                f"{folder}: is not a directory, so exported graphs cannot be cached there; point SENTFLOW_CACHE "
                "at a directory (it is created if missing)"
            )
    return root / kind


def digests_path(path: Path) -> Path:
    """The small JSON beside a cached file that holds its content checksums (and those of its companions)."""
    return path.with_name(path.name + ".sha256.json")


def record_digests(path: Path, companions: tuple[Path, ...] = ()) -> None:
    """Write the checksums of `path` and `companions` beside `path`, once they are complete."""
    digests = {p.name: file_hash(p).hexdigest() for p in (path, *companions)}
    write_atomic(digests_path(path), lambda tmp: tmp.write_text(json.dumps(digests, sort_keys=True), "utf-8"))


def is_intact(path: Path, companions: tuple[Path, ...] = ()) -> bool:
    """Whether `path` and `companions` exist and match the checksums recorded beside `path`."""
    try:
        expected = json.loads(digests_path(path).read_bytes()[: 1 << 16])
        return expected == {p.name: file_hash(p).hexdigest() for p in (path, *companions)}
    except (OSError, ValueError):
        return False


def texts_digest(texts: list[str]) -> str:
    """sha256 over the texts, length-prefixed so that boundaries count."""
    h = hashlib.sha256()
    for t in texts:
        data = t.encode("utf-8")
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


KeyOf = Callable[[list[str]], str]  # texts -> their cache key
Encode = Callable[[list[str]], np.ndarray]  # texts -> their (n, width) vectors
CACHE_BLOCK = 512  # texts per cache entry (see EmbeddingCache.encode); streaming.CHUNK_LINES is a multiple of it


class EmbeddingCache:
    """A folder of .npy files, one per (model, pooling, max_length, backend, texts) key."""

    def __init__(self, directory: str | os.PathLike | None = None) -> None:
        self.directory = Path(directory) if directory is not None else default_cache_dir() / "embeddings"

    def key(self, model: str, pooling: str, max_length: int, texts: list[str], backend: str = "torch") -> str:
        """Hash of everything the vectors depend on: model files, pooling (with its layer set), backend, texts."""
        spec = {"model": model_fingerprint(model), "pooling": pooling, "max_length": max_length, "backend": backend}
        spec["texts"] = texts_digest(texts)
        return spec_digest(spec)

    def get(self, key: str, n_rows: int, n_cols: int) -> np.ndarray | None:
        """The cached (n_rows, n_cols) float32 array, or None when absent or damaged (then re-encoded and stored
        again: the cache heals itself)."""
        path = self.directory / f"{key}.npy"
        if not path.is_file() or not digests_path(path).is_file():  # absent, or from a version without checksums
            return None
        array = self._load(path) if is_intact(path) else None
        fits = array is not None and array.shape == (n_rows, n_cols) and array.dtype == np.float32
        if array is None or not fits or not np.isfinite(array).all():
            warnings.warn(f"{path}: damaged embedding cache entry; encoding again", stacklevel=3)
            return None
        return array

    @staticmethod
    def _load(path: Path) -> np.ndarray | None:
        try:
            return load_npy(path)
        except ValueError:
            return None

    def encode(self, texts: list[str], key_of: KeyOf, width: int, encode: Encode) -> np.ndarray:
        """`encode(texts)` through the cache, one entry per block of CACHE_BLOCK consecutive texts from the first.

        Blocks make entries depend on content, not on how a corpus was split into calls: a corpus encoded whole
        (`eval retrieval`, `tune`) and the same corpus encoded in chunks of a multiple of CACHE_BLOCK (`index`,
        `encode`, resumed or not) share them. The blocks not cached are encoded in one call.
        """
        blocks = [texts[i : i + CACHE_BLOCK] for i in range(0, len(texts), CACHE_BLOCK)]
        keys = [key_of(block) for block in blocks]
        found: dict[int, np.ndarray] = {}
        for i, (key, block) in enumerate(zip(keys, blocks, strict=True)):
            hit = self.get(key, len(block), width)
            if hit is not None:
                found[i] = hit
        missing = [i for i in range(len(blocks)) if i not in found]
        if missing:
            fresh = encode([text for i in missing for text in blocks[i]])
            start = 0
            for i in missing:
                found[i], start = fresh[start : start + len(blocks[i])], start + len(blocks[i])
                self.put(keys[i], found[i])
        return found[0] if len(blocks) == 1 else np.concatenate([found[i] for i in range(len(blocks))])

    def put(self, key: str, array: np.ndarray) -> None:
        """Store an array with its checksum; a cache that cannot be written is a warning, never a lost result."""
        path = self.directory / f"{key}.npy"
        try:
            digests_path(path).unlink(missing_ok=True)  # the entry is not intact until both are written
            save_npy(path, array)
            record_digests(path)
        except (OSError, ValueError) as exc:
            warnings.warn(
                f"embedding cache not written ({first_line(exc)}); set SENTFLOW_CACHE or cache=False", stacklevel=3
            )
