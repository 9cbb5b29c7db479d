"""Where an OpenAI-compatible endpoint is and the key to it, from the environment or a git-ignored ``.env``.

Shared by the LLM question generators and the API embedding rows of the evaluation; the key never reaches
params, logs, metrics or the DVC cache.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from stages.lib.common.errors import UserError


@dataclass(frozen=True)
class Endpoint:
    api_base: str
    api_key: str = field(repr=False)  # never printed, logged or stored


def load_endpoint(purpose: str) -> Endpoint:
    """OPENAI_API_KEY / OPENAI_API_BASE from the environment, into which run_stage has read a git-ignored .env."""
    key = os.environ.get("OPENAI_API_KEY", "").strip()
    base = os.environ.get("OPENAI_API_BASE", "").strip() or "https://api.openai.com/v1"
    if not key:
        raise UserError(
            f"{purpose} needs an API key, but OPENAI_API_KEY is not set. Put it in the environment or in a .env "
            "file in the repository root (see .env.example), together with OPENAI_API_BASE for non-OpenAI "
            "endpoints. Never put it in params.yaml."
        )
    return Endpoint(api_base=base.rstrip("/"), api_key=key)


def env_or_param(param_value: str, variable: str, key_name: str) -> str:
    value = param_value.strip() or os.environ.get(variable, "").strip()
    if not value:
        raise UserError(
            f"No model name: params.yaml key '{key_name}' is empty and {variable} is not set. "
            f"Set one of them (params.yaml is better: DVC then reruns when it changes)."
        )
    return value


