"""Choosing an engine from what a front door was told: the CLI's and the ComfyUI nodes' shared rule.

``engine`` is ``"stability"``, ``"local"``, a server URL, or ``None``; ``model`` names a local model and
implies the local engine. With neither, a configured server or key means remote (the user set one up on
purpose), and otherwise the local engine runs, since the hosted service no longer answers.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from ..config import ENV_BASE_URL, STABILITY_BASE_URL, load_config, resolve_api_key
from ..errors import InvalidInputError, ModelError
from .base import Engine

__all__ = ["choose_engine", "ENGINE_CHOICES"]

ENGINE_CHOICES = "stability, local, or a server URL (http://host:port)"


def _uses_remote_by_default() -> bool:
    """Whether a server (``$IMG2VID_BASE_URL`` or the config file's ``base_url``) or a key is configured."""
    config = load_config()
    configured_url = config.get("base_url")
    if os.environ.get(ENV_BASE_URL, "").strip() or (isinstance(configured_url, str) and configured_url.strip()):
        return True
    return resolve_api_key(None, STABILITY_BASE_URL, config) is not None


LOCAL_INSTALL_HINT = (
    "the local engine needs torch and diffusers, which are not installed: "
    "pip install torch==2.13.0 'img2vid[local]' (or your CUDA build of torch; where torch is already "
    "installed, as in ComfyUI, keep it and pip install diffusers transformers safetensors accelerate), "
    "or use a server with --engine URL / IMG2VID_BASE_URL"
)


def _local_engine(
    model: str | None,
    *,
    device: str | None,
    dtype: str | None,
    speed: str | None = None,
    memory: str | None = None,
    loras: Sequence[str] = (),
) -> Engine:
    """The shared local engine; a missing torch or diffusers is an install hint, not a traceback."""
    try:
        from .local import DEFAULT_MODEL, LocalEngine
    except ImportError as exc:
        raise ModelError(LOCAL_INSTALL_HINT) from exc
    return LocalEngine.shared(model or DEFAULT_MODEL, device=device, dtype=dtype, speed=speed, memory=memory, loras=tuple(loras))


def choose_engine(
    engine: str | None = None,
    model: str | None = None,
    *,
    timeout: float | None = None,
    device: str | None = None,
    dtype: str | None = None,
    api_key: str | None = None,
    speed: str | None = None,
    memory: str | None = None,
    loras: Sequence[str] = (),
    server_model: str | None = None,
) -> Engine:
    """The engine the user asked for, built (a local one is shared per process and kept warm).

    ``api_key`` is handed to a remote engine ahead of the environment and config file; the local engine
    needs none. ``speed``, ``memory`` and ``loras`` are the local engine's settings; ``server_model`` names
    the model a remote img2vid server runs the job on (``model`` with a server URL means the same).
    """
    kind = (engine or "").strip()
    if model is not None and kind.startswith(("http://", "https://")):
        server_model, model = model, None  # a model name for that server, not a local model
    if model is not None and kind and kind.lower() != "local":
        raise InvalidInputError(
            f"--model picks the local engine (or a server's model, with --engine URL), but --engine is {kind!r}; "
            "drop one of them",
            field="engine",
            value=kind,
            allowed=ENGINE_CHOICES,
        )
    if kind.lower() == "local" or model is not None or (not kind and not _uses_remote_by_default()):
        return _local_engine(model, device=device, dtype=dtype, speed=speed, memory=memory, loras=loras)
    if loras:
        raise InvalidInputError(
            "--lora loads LoRA files into a local model; the chosen engine is a server: drop --lora, or use --model",
            field="lora",
            value=loras[0],
            allowed="LoRA files with the local engine",
        )

    from .remote import RemoteEngine

    if not kind:
        base_url = None
    elif kind.lower() == "stability":
        base_url = STABILITY_BASE_URL
    elif kind.startswith(("http://", "https://")):
        base_url = kind
    else:
        raise InvalidInputError.for_field("engine", kind, ENGINE_CHOICES)
    if timeout is None:
        return RemoteEngine(base_url, api_key, model=server_model)
    return RemoteEngine(base_url, api_key, model=server_model, timeout=timeout)
