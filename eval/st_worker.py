"""Worker for eval/bench_encode.py: sentence-transformers' ONNX / OpenVINO backends, timed in another interpreter.

sentence-transformers' ONNX backend needs optimum-onnx and its OpenVINO backend optimum-intel; both pin older
transformers than sentflow's, so they live in a side virtualenv (e.g. `python -m venv /work/venv-st-ov &&
/work/venv-st-ov/bin/pip install torch==2.13.0 'sentence-transformers[onnx,openvino]'`). This file imports
neither sentflow nor torch directly, so that interpreter needs nothing else.
Protocol: `python st_worker.py WORKDIR` with WORKDIR/texts.json and WORKDIR/source.txt (the model directory);
one JSON request per stdin line ({"variant", "threads", "batch", "warm"}), one {"seconds"} reply per line, the
vectors in WORKDIR/out.npy.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np


def st_model(model_dir: Path, variant: str, threads: int) -> Any:
    """A sentence-transformers model of `variant` (onnx, onnx-int8, openvino, openvino-bf16) on `threads` threads."""
    from sentence_transformers import SentenceTransformer

    if variant.startswith("openvino"):
        config: dict[str, Any] = {"INFERENCE_NUM_THREADS": threads}
        if variant == "openvino":  # OpenVINO's default on a CPU with bf16 instructions is bf16
            config["INFERENCE_PRECISION_HINT"] = "f32"
        kwargs: dict[str, Any] = {"ov_config": config}
        return SentenceTransformer(str(model_dir), backend="openvino", device="cpu", model_kwargs=kwargs)
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    name = "model.onnx" if variant == "onnx" else next((model_dir / "onnx").glob("model_*int8_avx2.onnx")).name
    kwargs = {"file_name": f"onnx/{name}", "session_options": options}
    return SentenceTransformer(str(model_dir), backend="onnx", device="cpu", model_kwargs=kwargs)


def st_export(model_dir: Path, variant: str) -> None:
    """Export the checkpoint in `model_dir` for `variant` once, next to it, as sentence-transformers does."""
    from sentence_transformers import SentenceTransformer

    backend: Literal["onnx", "openvino"] = "openvino" if variant.startswith("openvino") else "onnx"
    if not (model_dir / backend).is_dir():
        SentenceTransformer(str(model_dir), backend=backend, device="cpu").save_pretrained(str(model_dir))
    if variant == "onnx-int8" and not any((model_dir / "onnx").glob("model_*int8_avx2.onnx")):
        from sentence_transformers import export_dynamic_quantized_onnx_model

        exported = SentenceTransformer(str(model_dir), backend="onnx", device="cpu")
        export_dynamic_quantized_onnx_model(exported, "avx2", str(model_dir))  # stores uint8 weights (quint8)


def serve(workdir: Path) -> None:
    """Serve timing requests over stdin/stdout (see the module docstring)."""
    texts = json.loads((workdir / "texts.json").read_text())
    model_dir = workdir / "model"
    if not model_dir.is_dir():
        shutil.copytree((workdir / "source.txt").read_text().strip(), model_dir)
    models: dict[tuple[str, int], Any] = {}
    for line in sys.stdin:
        request = json.loads(line)
        key = (request["variant"], request["threads"])
        if key not in models:
            st_export(model_dir, request["variant"])
            models[key] = st_model(model_dir, *key)
        chosen = texts[:64] if request.get("warm") else texts
        start = time.perf_counter()
        out = models[key].encode(chosen, batch_size=request["batch"], convert_to_numpy=True)
        seconds = time.perf_counter() - start
        np.save(workdir / "out.npy", out)
        print(json.dumps({"seconds": seconds}), flush=True)


if __name__ == "__main__":
    serve(Path(sys.argv[1]))
