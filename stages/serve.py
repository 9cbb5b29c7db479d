"""Serve the fine-tuned model as an OpenAI-compatible embeddings API.

    python -m stages.serve                                  # models/finetuned on 127.0.0.1:8080, PyTorch
    python -m stages.serve --host 0.0.0.0 --port 8080       # reachable from other machines (set a key)
    python -m stages.serve --backend onnx-int8              # models/finetuned-onnx, int8 (the export stage's)
    python -m stages.serve --model-dir models/base --model-name e5-base

Not a DVC stage: it reads the pipeline's model and changes nothing. Model names: ``<name>`` and
``<name>-passage`` embed passages, ``<name>-query`` queries (``<name>`` with NVIDIA's
``input_type: "query"`` too); ``<name>`` is the folder's name unless ``--model-name`` says otherwise.
Texts are truncated to the model's ``max_seq_length``, as the evaluation encoded them; a text above
``--max-tokens`` is refused. An API key is required when ``EMBEDDING_API_KEY`` is set (environment or
the git-ignored ``.env``; never a flag, never printed).
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from stages.lib.common.arguments import positive_int
from stages.lib.common.errors import UserError, run_stage
from stages.lib.serving.address import check_listen, is_loopback

log = logging.getLogger(__name__)

API_KEY_VARIABLE = "EMBEDDING_API_KEY"
# Where each backend's model is by default, and how to make it.
BACKENDS = {
    "torch": (Path("models/finetuned"), "run `dvc repro` to make it (its `model_card` stage writes it from the `train` "
                                        "stage's model), or `dvc pull models/finetuned` to fetch a teammate's from the DVC remote"),
    "onnx": (Path("models/finetuned-onnx"), "set `export.enabled: true` in params.yaml and run `dvc repro export`"),
    "onnx-int8": (Path("models/finetuned-onnx"), "set `export.enabled: true` in params.yaml and run `dvc repro export`"),
}


@run_stage("serve")
def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing downloads at run time
    args = _arguments()

    # 1. The model folder (a missing one names the stage that makes it) and the key, before anything heavy loads.
    folder = _model_folder(args.backend, args.model_dir)
    check_listen(args.host, args.port)
    api_key = os.environ.get(API_KEY_VARIABLE, "").strip()

    # 2. The encoder and the app.
    encoder = _encoder(args.backend, folder, args.device, args.precision)
    encoder.encode_query(["warm-up"])  # the first call of a model is slow (allocations, kernels): not a client's
    encoder.encode_document(["warm-up"])
    from stages.lib.serving.server import ServerSettings, create_app

    settings = ServerSettings(model_name=args.model_name or encoder.name, api_key=api_key, max_inputs=args.max_inputs,
                              max_tokens=args.max_tokens, max_batch_texts=args.max_batch, max_wait_ms=args.max_wait_ms,
                              max_queue=args.max_queue)
    app = create_app(encoder, settings)

    # 3. Say what is served, then serve until Ctrl+C.
    log.info(_describe(encoder, folder, args, settings))
    import uvicorn

    uvicorn.run(app, host=args.host, port=args.port, access_log=args.access_log, log_level="info")


def _model_folder(backend: str, given: Path | None) -> Path:
    default, how = BACKENDS[backend]
    folder = given or default
    if not folder.is_dir():
        if given is None:
            raise UserError(f"{folder} is missing: {how}. Or serve another folder with --model-dir.")
        raise UserError(f"--model-dir {folder} is not a folder. The pipeline's own model is {default} ({how}).")
    if backend == "torch" and not (folder / "modules.json").is_file():
        raise UserError(f"{folder} is not a sentence-transformers folder (it has no modules.json). Point --model-dir at "
                        "one, such as models/finetuned, or use --backend onnx for the export's folder.")
    return folder


def _encoder(backend: str, folder: Path, device: str, precision: str = "auto"):
    if backend == "torch":
        from stages.lib.models.hardware import available_devices
        from stages.lib.serving.encoders import SentenceTransformerEncoder

        if device != "auto" and device not in available_devices():
            raise UserError(f"--device {device}: this machine has no such device (available: "
                            f"{', '.join(available_devices())}). Use --device auto, or one of those.")
        _check_precision(device, precision)
        return SentenceTransformerEncoder(folder, device=device, precision=precision)
    if device != "auto" or precision != "auto":
        raise UserError(f"--device and --precision are for the torch backend; the {backend} backend runs on onnxruntime's "
                        "CPU provider in the precision of its file (onnx: fp32, onnx-int8: int8).")
    from stages.lib.models.onnx_encoder import OnnxEncoder  # onnxruntime loads only for this backend

    return OnnxEncoder(folder, variant="int8" if backend == "onnx-int8" else "fp32")


def _check_precision(device: str, precision: str) -> None:
    from stages.lib.models.hardware import resolve_device, resolve_precision

    try:
        resolve_precision(precision, resolve_device(device))
    except UserError:
        raise UserError(f"--precision {precision}: this {resolve_device(device).upper()} cannot encode in it (fp16 needs a "
                        "GPU; bf16 a GPU or a CPU with avx512_bf16 or amx_bf16 in /proc/cpuinfo). Use --precision auto, "
                        "or fp32.") from None


def _describe(encoder, folder: Path, args: argparse.Namespace, settings) -> str:
    name = settings.model_name
    loopback = is_loopback(args.host)
    key = (f"required ({API_KEY_VARIABLE} is set): send 'Authorization: Bearer <key>'" if settings.api_key else
           f"none ({API_KEY_VARIABLE} is not set)" + ("" if loopback else
                                                      f"; WARNING: anyone who can reach {args.host} can use it"))
    return "\n".join([
        f"{folder} on the {args.backend} backend, device {getattr(encoder, 'hardware', 'onnxruntime (CPU)')}",
        f"  models: {name} and {name}-passage (passages), {name}-query (queries); or input_type 'query' / 'passage'",
        f"  dimension {encoder.dimension}, max_seq_length {encoder.max_seq_length} tokens (longer texts truncated, as "
        f"the evaluation encoded them; above {settings.max_tokens} refused)",
        f"  prompts: query {encoder.query_prompt!r}, passage {encoder.document_prompt!r}",
        f"  API key: {key}",
        f"  limits: {settings.max_inputs} inputs per request, batches of up to {settings.max_batch_texts} texts "
        f"gathered for {settings.max_wait_ms:g} ms, {settings.max_queue} requests waiting at most",
        f"  OpenAI base URL: http://{args.host}:{args.port}/v1  (POST /v1/embeddings, GET /v1/models, GET /health)",
    ])


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m stages.serve", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    parser.add_argument("--backend", choices=tuple(BACKENDS), default="torch",
                        help="torch: the sentence-transformers folder (default models/finetuned); onnx / onnx-int8: "
                             "the export stage's models/finetuned-onnx, fp32 or int8")
    parser.add_argument("--model-dir", type=Path, help="serve this folder instead of the backend's default")
    parser.add_argument("--model-name", help="the served model name (default: the folder's name)")
    parser.add_argument("--device", choices=("auto", "cuda", "mps", "cpu"), default="auto",
                        help="torch backend: auto (default) = CUDA, else Apple MPS, else CPU")
    parser.add_argument("--precision", choices=("auto", "bf16", "fp16", "fp32"), default="auto",
                        help="torch backend: auto (default) = bf16 where the GPU or CPU computes it natively, else fp32 "
                             "(fp16 on a GPU without bf16)")
    parser.add_argument("--max-inputs", type=positive_int, default=2048, help="texts per request (default 2048, as OpenAI)")
    parser.add_argument("--max-tokens", type=positive_int, default=8192,
                        help="a text above this many tokens is refused (default 8192); up to it, truncated to the "
                             "model's max_seq_length")
    parser.add_argument("--max-batch", type=positive_int, default=256,
                        help="texts per encoder call, gathered from concurrent requests (default 256)")
    parser.add_argument("--max-wait-ms", type=float, default=5.0,
                        help="how long a batch waits for more requests (default 5 ms)")
    parser.add_argument("--max-queue", type=positive_int, default=1024,
                        help="requests waiting at most; one more gets 503 (default 1024)")
    parser.add_argument("--access-log", action=argparse.BooleanOptionalAction, default=True,
                        help="log one line per request (method, path, status; never headers)")
    args = parser.parse_args()
    if not 0 < args.port < 65536:
        parser.error(f"--port must be 1..65535, got {args.port}")
    if args.max_wait_ms < 0:
        parser.error("--max-wait-ms must be >= 0")
    if args.model_name is not None and not args.model_name.strip():
        parser.error("--model-name is empty")
    return args


if __name__ == "__main__":
    main()
