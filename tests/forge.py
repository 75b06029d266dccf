"""Files as a hostile or foreign writer makes them: any header, with a valid content checksum."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from sentflow.files.io import tensors_digest


def forge_tensors(path: Path, tensors: dict[str, torch.Tensor], meta: object) -> Path:
    """Write `tensors` with `meta` (JSON-encoded unless already a string) as the sentflow header."""
    header = meta if isinstance(meta, str) else json.dumps(meta)
    save_file(tensors, str(path), metadata={"sentflow": header, "sentflow_sha256": tensors_digest(tensors)})
    return path
