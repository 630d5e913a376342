"""The OpenAPI document as a generated client needs it: the real answers, the real limits, no 422.

FastAPI writes the document from the routes; this module adds what only this server's settings know and
removes what FastAPI adds by habit:

- every form field's range in words, and ``maximum`` lowered to the server's cost cap where it has one
  (``frames``, ``steps``, ``decode_chunk_size``), with the cap's variable named;
- the image rules (types, sizes, the upload limit) and the rule that an empty field means its default
  (said in words: a type union with the empty string would make every generated client's field a union);
- no 422 "Validation Error" answer: the server maps every validation problem to a 400 with the error body;
  its one 422 (``idempotency_key_reused``, a reused Idempotency-Key) is declared on the start routes;
- with auth off (``--no-auth``), no security requirement.

The error answers themselves are declared on the routes (:data:`ERROR_ANSWERS`), so each route lists the
statuses it really gives. This module must never change what a request or an answer does; it only
describes them.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, Field

from ..fitting import PROTOCOL_SIZES, FitMode
from ..jobs.settings import CAP_SETTINGS, ServerSettings
from ..request import MAX_PROMPT_CHARS, RANGES, TEXT_FIELDS, range_text
from .uploads import FORM_FIELDS, GENERATION_DEFAULTS

__all__ = [
    "ErrorAnswer",
    "ERROR_ANSWERS",
    "IDEMPOTENCY_HEADER",
    "HEALTH_ANSWERS",
    "METRICS_ANSWERS",
    "error_answers",
    "form_schema",
    "install_openapi",
]


class ErrorAnswer(BaseModel):
    """The protocol's error body, the same for every refusal."""

    id: str = Field(description="An id for this answer; for a 500, the server's log has the details under it.")
    name: str = Field(description="Machine-readable: invalid_parameters, unauthorized, not_found, rate_limited, ...")
    errors: list[str] = Field(description="Human-readable messages; the first names the field and what is allowed.")


_RETRY_AFTER = {"description": "Seconds to wait before trying again.", "schema": {"type": "integer", "minimum": 1}}

#: Every error status the protocol routes give -> what it means here.
ERROR_ANSWERS: dict[int, str] = {
    400: "Invalid parameters (invalid_parameters): the first message names the field and what is allowed. "
    "A failed job's result gives its stored error with its own status (400 or 500).",
    401: "Missing or wrong API key (unauthorized).",
    403: "The job's result was filtered (content_filtered); no video is handed over.",
    404: "No such job: unknown, expired, or another key's (never says which).",
    409: "The job already finished (conflict): its result or its error can be fetched.",
    410: "The job was cancelled by its owner (cancelled).",
    413: "The request is larger than the upload limit (payload_too_large).",
    422: "The Idempotency-Key was already used in the last 24 hours with a different request (another image, "
    "route generation or field value): idempotency_key_reused, naming the key. The same request again answers "
    "the first job's id.",
    429: "Too many requests (rate_limited: per key, or wrong keys from one address) or too many jobs waiting "
    "for this key (too_many_jobs). Retry-After says when to try again.",
    500: "The server or the engine failed (internal_error; out_of_memory when the device ran out of memory, "
    "model_error when the model cannot be loaded); the error id is in the server's log.",
    503: "The server cannot take the request now: the job store does not answer (store_unavailable) or the "
    "queue is full (queue_full). Nothing was accepted; sending again later is safe.",
}


#: The start routes' optional ``Idempotency-Key`` header: 1 to 200 printable ASCII characters, no spaces at
#: either end (HTTP strips them).
IDEMPOTENCY_HEADER: dict[str, Any] = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "Makes a retried start safe: the same key with the same request (route generation, image and "
    "every field) within 24 hours answers the first job's id instead of making another job; the same key with a "
    "different request is a 422 (idempotency_key_reused). Keys are per API key. 1 to 200 printable ASCII "
    "characters (more, fewer or others are a 400).",
    "schema": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": "^[!-~]([ -~]*[!-~])?$"},
}


def error_answers(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` entries for these statuses: the error body, its meaning, ``Retry-After`` where given."""
    answers: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        answer: dict[str, Any] = {"model": ErrorAnswer, "description": ERROR_ANSWERS[status]}
        if status in (429, 503):
            answer["headers"] = {"Retry-After": _RETRY_AFTER}
        answers[status] = answer
    return answers


class ModelHealth(BaseModel):
    held: bool = Field(description="Whether a live worker holds the model.")
    live_workers: int = Field(ge=0)


class HealthAnswer(BaseModel):
    """What ``/healthz`` answers, ready or not."""

    status: str = Field(
        description="ok when ready; starting while the engine loads; degraded when the store or the broker does not answer."
    )
    version: str
    dispatch: str = Field(description="embedded (jobs run in this server) or celery (jobs run by img2vid workers).")
    store: str = Field(description="ok, or down when the job store does not answer.")
    broker: str | None = Field(None, description="ok or down; only with dispatch=celery.")
    queued: int | None = Field(None, ge=0, description="Jobs waiting to start (absent when the store does not answer).")
    models: dict[str, ModelHealth] | None = Field(
        None,
        description="dispatch=celery: each admitted model and its live workers; a model without one never makes this 503 "
        "(its jobs wait, and their answers say so).",
    )


#: ``/healthz``'s answers: 200 when ready, 503 while starting or when the store does not answer.
HEALTH_ANSWERS: dict[int | str, dict[str, Any]] = {
    200: {"model": HealthAnswer, "description": "Ready: the engine is loaded (embedded), and the store and the broker answer."},
    503: {
        "model": HealthAnswer,
        "description": "Not ready: the engine is still loading (status 'starting'), or the job store or the broker "
        "does not answer (status 'degraded'; the body says which is down).",
    },
    500: {"model": ErrorAnswer, "description": ERROR_ANSWERS[500]},
}

#: ``/metrics``: Prometheus' text format.
METRICS_ANSWERS: dict[int | str, dict[str, Any]] = {
    200: {"description": "Prometheus' text exposition format.", "content": {"text/plain": {"schema": {"type": "string"}}}},
}


def form_schema(generation: str) -> dict[str, Any]:
    """The start route's multipart body, for ``openapi_extra``: the fields, their types and defaults
    (the words and this server's limits are filled in by :func:`install_openapi`)."""
    defaults = {"seed": 0, **GENERATION_DEFAULTS[generation]}
    properties: dict[str, Any] = {"image": {"type": "string", "format": "binary"}}
    for name in FORM_FIELDS:
        properties[name] = {"type": "integer" if RANGES[name][0] is int else "number"}
        if name in defaults:
            properties[name]["default"] = defaults[name]
    properties["model"] = {"type": "string", "maxLength": 200}
    for name in TEXT_FIELDS:
        properties[name] = {"type": "string", "maxLength": MAX_PROMPT_CHARS}
    properties["fit"] = {"type": "string", "enum": [mode.value for mode in FitMode], "default": FitMode.CROP.value}
    schema = {"type": "object", "required": ["image"], "properties": properties}
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": schema}}}}


def _field_description(name: str, settings: ServerSettings, default: Any) -> tuple[str, float | None]:
    """Words for one form field and the ``maximum`` this server accepts (None: the range's own)."""
    allowed = range_text(name)
    words = [allowed[0].upper() + allowed[1:]]
    if name == "seed":
        words.append("0 or absent: a random seed, reported with the result")
    elif default is not None:
        words.append(f"default {default}")
    else:
        words.append("img2vid's local engine only; absent: the engine's default")
    maximum = None
    setting = CAP_SETTINGS.get(name)
    if setting is not None:
        cap = int(getattr(settings, setting))
        if cap < RANGES[name][2]:
            maximum = float(cap)
            words.append(f"this server accepts at most {cap} (its cost cap, IMG2VID_{setting.upper()}); more is a 400")
    return "; ".join(words) + ".", maximum


def _describe_form(schema: dict[str, Any], settings: ServerSettings) -> None:
    properties = schema.get("properties", {})
    sizes = f"any size up to {settings.max_pixels:,} pixels" if settings.any_size else PROTOCOL_SIZES.describe()
    if "image" in properties:
        properties["image"]["description"] = (
            f"The first frame: a PNG, JPEG or WebP file ({sizes}); the whole request may be at most "
            f"{settings.max_upload_bytes / (1024 * 1024):g} MiB (more is a 413)."
        )
    served = settings.served_models()
    if "model" in properties:
        names = [model.name for model in served]
        if not (settings.dispatch == "celery" and not (settings.models or settings.model)):
            properties["model"]["enum"] = names  # a front end without --model admits what live workers hold
        properties["model"]["description"] = (
            f"img2vid's extension: which served model runs the job (absent or empty: {names[0]}, the default); "
            "GET /info describes each one's fields, defaults, frame rule and sizes. A field the model does not "
            "read, or a frame count outside its rule, is a 400 naming the field."
        )
    texts = {
        "prompt": "What should happen in the video",
        "negative_prompt": "What to avoid (absent: the model's recommended negative prompt)",
    }
    for name, words in texts.items():
        if name in properties:
            properties[name]["description"] = (
                f"img2vid's extension, for models that take a prompt (Wan, LTX-Video): {words}; at most "
                f"{MAX_PROMPT_CHARS} characters. Sent to a model that takes none (SVD), a 400."
            )
    if "fit" in properties:
        properties["fit"]["description"] = (
            "img2vid's extension: how an image of another size is fitted to a Wan or LTX-Video model's rule "
            "(crop, pad, stretch, or strict: a 400 listing the sizes). SVD models take the protocol's sizes."
        )
    for name, entry in properties.items():
        if name not in RANGES:
            continue
        kind, low, high = RANGES[name]
        text, cap = _field_description(name, settings, entry.get("default"))
        entry["description"] = text
        top = high if cap is None else cap
        entry["minimum"], entry["maximum"] = (int(low), int(top)) if kind is int else (low, top)
    schema["description"] = (
        "Fields are text, read as the protocol's numbers: an integer is ASCII digits with an optional '-', a "
        "number is plain decimal notation (no '+', '_', spaces, hex, nan or inf). A field sent empty means its "
        "default, like an absent one. Fields the server does not know are ignored."
    )


def _overview(settings: ServerSettings) -> str:
    """The document's description: the protocol, the key, and the limits this server applies."""
    lines = [
        "Stability AI's image-to-video protocol (v2beta and v2alpha routes), served by img2vid: start a job with "
        "a multipart POST, then poll its result (202 while it runs, then the video).",
        "",
        "Every refusal is the protocol's error body {\"id\", \"name\", \"errors\"} with its status; "
        "429 and 503 carry Retry-After.",
    ]
    if settings.auth:
        lines.append(
            f"Auth: 'authorization: Bearer <key>' (or the bare key). Wrong keys are limited to "
            f"{settings.auth_failure_limit} per {settings.auth_failure_window:g} s per client address (then 429)."
        )
    if settings.rate_limit:
        lines.append(f"Rate limit: {settings.rate_limit} requests per {settings.rate_window:g} s per key (then 429).")
    caps = ", ".join(f"{field} {cap}" for field, cap in settings.cost_caps().items())
    lines.append(f"Cost caps on this server: {caps} (more is a 400 naming the field and the cap).")
    return "\n".join(lines)


def _refine(document: dict[str, Any], settings: ServerSettings) -> dict[str, Any]:
    document.setdefault("info", {})["description"] = _overview(settings)
    names = [model.name for model in settings.served_models()]
    fixed_names = not (settings.dispatch == "celery" and not (settings.models or settings.model))
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                if parameter.get("name") == "model" and parameter.get("in") == "query" and fixed_names:
                    parameter.setdefault("schema", {})["enum"] = names  # the served names, as the form's field
            responses = operation.get("responses", {})
            if responses.get("422", {}).get("description") == "Validation Error":  # FastAPI's, never answered
                responses.pop("422")
            if not settings.auth:
                operation.pop("security", None)
            form = operation.get("requestBody", {}).get("content", {}).get("multipart/form-data", {}).get("schema")
            if form is not None:
                _describe_form(form, settings)
    schemas = document.get("components", {}).get("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    if not settings.auth:
        document.get("components", {}).pop("securitySchemes", None)
    return document


def install_openapi(app: FastAPI, settings: ServerSettings) -> None:
    """Make ``app.openapi()`` (and so ``/openapi.json`` and ``/docs``) serve the refined document."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _refine(generate(), settings)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
