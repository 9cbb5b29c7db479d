"""The OpenAI embeddings API as this server speaks it: request validation, response and error shapes.

A request names one role, query or passage, so that each text gets the prompt the model was trained and
measured with. Two ways to say it: NVIDIA's retriever API field ``input_type: "query" | "passage"``,
or, for clients that send nothing but OpenAI's fields, one model name per role: ``<name>-query``,
``<name>-passage``, and ``<name>`` (passage unless ``input_type`` says query). A query model name with
``input_type: "passage"`` (or the reverse) is refused rather than guessed.

Errors are OpenAI's shape, ``{"error": {"message", "type", "param", "code"}}``, with the HTTP status
in ``APIError.status``; messages never echo a credential.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass

import numpy as np

from stages.lib.serving.encoders import PASSAGE, QUERY, ROLES

ENCODING_FORMATS = ("float", "base64")


class APIError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 type_: str = "invalid_request_error", headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.type = status, message, param, code, type_
        self.headers = headers or {}

    def body(self) -> dict:
        return error_body(self.message, self.type, self.param, self.code)


def error_body(message: str, type_: str = "invalid_request_error", param: str | None = None,
               code: str | None = None) -> dict:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


@dataclass(frozen=True)
class ServedNames:
    """The model names this server answers to: ``<base>`` and one per role."""

    base: str

    def role_of(self) -> dict[str, str | None]:
        return {self.base: None, f"{self.base}-{QUERY}": QUERY, f"{self.base}-{PASSAGE}": PASSAGE}

    @property
    def names(self) -> list[str]:
        return list(self.role_of())

    def model_not_found(self, name: object) -> APIError:
        return APIError(404, f"The model {name!r} is not served here. Served models: {', '.join(self.names)} "
                             f"({self.base} and {self.base}-{PASSAGE} embed passages, {self.base}-{QUERY} queries).",
                        param="model", code="model_not_found")


@dataclass(frozen=True)
class EmbeddingsRequest:
    texts: list[str]
    role: str  # QUERY or PASSAGE
    model: str  # as the client named it; echoed in the response
    encoding_format: str


def parse_embeddings_request(raw: bytes, names: ServedNames, dimension: int, max_inputs: int) -> EmbeddingsRequest:
    """The request body, checked field by field; the first problem found is raised as an ``APIError``."""
    try:
        payload = json.loads(raw)
    except ValueError:
        raise APIError(400, "The request body is not valid JSON. Send a JSON object such as "
                            '{"model": "...", "input": ["text", ...]}.', code="invalid_json") from None
    if not isinstance(payload, dict):
        raise APIError(400, f"The request body must be a JSON object, got {_json_type(payload)}.", code="invalid_json")

    model = payload.get("model")
    if model is None:
        raise APIError(400, f"'model' is required. Served models: {', '.join(names.names)}.", param="model",
                       code="missing_required_parameter")
    if not isinstance(model, str):
        raise APIError(400, f"'model' must be a string, got {_json_type(model)}.", param="model", code="invalid_type")
    if model not in names.role_of():
        raise names.model_not_found(model)

    texts = _parse_input(payload.get("input"), max_inputs)
    encoding_format = payload.get("encoding_format")
    if encoding_format is None:
        encoding_format = "float"
    if encoding_format not in ENCODING_FORMATS:
        raise APIError(400, f"'encoding_format' must be one of {', '.join(ENCODING_FORMATS)}, got {encoding_format!r}.",
                       param="encoding_format", code="invalid_value")
    dimensions = payload.get("dimensions")
    if dimensions is not None and (isinstance(dimensions, bool) or dimensions != dimension):
        raise APIError(400, f"'dimensions' is {dimensions!r}, but this model's vectors have {dimension} dimensions and are "
                            f"not shortened. Leave 'dimensions' out or set it to {dimension}.", param="dimensions",
                       code="invalid_value")
    return EmbeddingsRequest(texts, _role(names.role_of()[model], payload.get("input_type"), model), model, encoding_format)


def _parse_input(value: object, max_inputs: int) -> list[str]:
    if value is None:
        raise APIError(400, "'input' is required: a string or a list of strings.", param="input",
                       code="missing_required_parameter")
    if isinstance(value, str):
        value = [value]
    elif not isinstance(value, list):
        raise APIError(400, f"'input' must be a string or a list of strings, got {_json_type(value)}.", param="input",
                       code="invalid_type")
    if not value:
        raise APIError(400, "'input' is an empty list: send at least one text.", param="input", code="invalid_value")
    if all(isinstance(item, int) and not isinstance(item, bool) for item in value) or any(
            isinstance(item, list) for item in value):
        raise APIError(400, "'input' holds token ids: this server takes text only (its tokenizer is the model's own, "
                            "not OpenAI's). Send the text itself.", param="input", code="unsupported_input")
    if len(value) > max_inputs:
        raise APIError(400, f"'input' holds {len(value)} texts; this server takes at most {max_inputs} per request "
                            "(--max-inputs). Split them over several requests.", param="input", code="too_many_inputs")
    for index, item in enumerate(value):
        if not isinstance(item, str):
            raise APIError(400, f"input[{index}] must be a string, got {_json_type(item)}.", param="input",
                           code="invalid_type")
        if not item:
            raise APIError(400, f"input[{index}] is an empty string: there is nothing to embed.", param="input",
                           code="invalid_value")
    return value


def _role(model_role: str | None, input_type: object, model: str) -> str:
    if input_type is not None and input_type not in ROLES:
        raise APIError(400, f"'input_type' must be {QUERY!r} or {PASSAGE!r}, got {input_type!r}.", param="input_type",
                       code="invalid_value")
    if model_role and input_type and model_role != input_type:
        raise APIError(400, f"The model {model!r} embeds {model_role} texts, but 'input_type' is {input_type!r}. "
                            "Leave 'input_type' out, or name the model without its role suffix.", param="input_type",
                       code="conflicting_role")
    return input_type or model_role or PASSAGE


def too_many_tokens(index: int, tokens: int, limit: int, max_seq_length: int, role: str) -> APIError:
    return APIError(400, f"input[{index}] is {tokens} tokens (with the {role} prompt), above this server's limit of "
                         f"{limit} tokens (--max-tokens). Texts up to {limit} tokens are truncated to the model's "
                         f"{max_seq_length}-token window, as the evaluation encoded them; split longer texts into chunks.",
                    param="input", code="context_length_exceeded")


def embeddings_response(vectors: np.ndarray, model: str, encoding_format: str, prompt_tokens: int) -> dict:
    rows = np.asarray(vectors, dtype="<f4")  # base64: little-endian float32 bytes, as OpenAI sends them
    base64_rows = encoding_format == "base64"
    data = [base64.b64encode(row.tobytes()).decode("ascii") for row in rows] if base64_rows else rows.tolist()
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": embedding} for i, embedding in enumerate(data)],
        "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }


def model_object(name: str, created: int) -> dict:
    return {"id": name, "object": "model", "created": created, "owned_by": "embedding-ft"}


def models_response(names: ServedNames, created: int) -> dict:
    return {"object": "list", "data": [model_object(name, created) for name in names.names]}


def _json_type(value: object) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "a number", float: "a number",
            type(None): "null"}.get(type(value), type(value).__name__)
