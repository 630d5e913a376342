"""The protocol's routes, both generations, with one pair of handlers.

``POST .../image-to-video`` checks everything, writes the job, then answers its id;
``GET .../result/{id}`` answers 202 with progress and ``Retry-After`` while the job runs, the video (raw or
JSON, by ``accept``) when done, the stored error when failed, and 404 for an id that is unknown, expired
or another key's, never saying which. Handlers stay short: the checks live in :mod:`.uploads`, the
storage in :mod:`.store`. This module must never answer a 202 by loading a result blob.
"""

from __future__ import annotations

import base64
import re
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from ..errors import ConflictError, IdempotencyKeyReusedError, InvalidInputError, NotFoundError, PayloadTooLargeError
from ..jobs.store import CANCELLED, DONE, FAILED, JobStatus
from .deps import OwnerDep, StateDep
from .errors import error_body
from .openapi import IDEMPOTENCY_HEADER, error_answers, form_schema
from .uploads import build_request, check_fields, choose_model, read_submit, request_fingerprint

__all__ = ["router", "GENERATIONS", "wants_json"]

#: Route generation -> path prefix.
GENERATIONS = {"v2beta": "/v2beta/image-to-video", "v2alpha": "/v2alpha/generation/image-to-video"}
_JOB_ID = re.compile(r"^[0-9a-f]{64}$")


class SubmitAnswer(BaseModel):
    id: str = Field(description="The job id: 64 hex characters.")
    notice: str | None = Field(
        None,
        description="img2vid's addition, present only when the job may wait long: no live worker holds its model "
        "(it stays queued and runs when one starts).",
    )


class InProgressAnswer(BaseModel):
    id: str
    status: str = Field("in-progress", description="Always 'in-progress' while the job is queued or running.")
    progress: float = Field(0.0, ge=0, le=1, description="img2vid's addition: the fraction done, 0..1.")
    queue_position: int = Field(
        0, ge=0, description="img2vid's addition: 0 while the job runs, else 1, 2, 3... in the order jobs will start."
    )
    notice: str | None = Field(
        None, description="img2vid's addition, present only while the job is queued and no live worker holds its model."
    )


class CancelAnswer(BaseModel):
    id: str
    status: str = Field(default="cancelled", description="Always 'cancelled'.")


class JsonVideoAnswer(BaseModel):
    video: str = Field(description="The MP4, base64-encoded.")
    finish_reason: str = Field(description="SUCCESS or CONTENT_FILTERED (v2alpha spells the key finishReason).")
    seed: int


_SUBMIT_ERRORS = error_answers(400, 401, 413, 422, 429, 500, 503)
_RESULT_ERRORS = error_answers(400, 401, 403, 404, 410, 429, 500, 503)
_CANCEL_ERRORS = error_answers(401, 404, 409, 429, 503)


def _json_video_schema(generation: str) -> dict[str, Any]:
    """The JSON form's schema as this generation spells it (v2alpha: ``finishReason``)."""
    schema = JsonVideoAnswer.model_json_schema()
    if generation == "v2alpha":
        schema["properties"]["finishReason"] = schema["properties"].pop("finish_reason")
        schema["required"] = ["video", "finishReason", "seed"]
    return schema


def _not_found() -> NotFoundError:
    return NotFoundError("no such job: the id is unknown, expired, or not visible to this key")


def wants_json(accept: str | None) -> bool:
    """``application/json`` asked for (and no video type): the JSON form; anything else: the raw MP4."""
    if not accept:
        return False
    types = {part.split(";", 1)[0].strip().lower() for part in accept.split(",")}
    return "application/json" in types and not any(t.startswith("video/") for t in types)


#: The longest an Idempotency-Key may be (the OpenAPI document says the same: openapi.IDEMPOTENCY_HEADER).
_IDEMPOTENCY_KEY_MAX = 200


def _retry_after(status: JobStatus, position: int, default: int, ceiling: int) -> int:
    """Seconds until polling again is worth it: from the running job's pace, or its place in the queue."""
    if position > 0:
        return int(min(ceiling, default * position))
    if status.started_at is not None and status.progress > 0.02:
        elapsed = status.now - status.started_at  # both the database's clock
        left = elapsed * (1.0 - status.progress) / status.progress
        return int(max(1, min(ceiling, round(left))))
    return min(default, ceiling)


def _idempotency_key(request: Request) -> str | None:
    value = request.headers.get("idempotency-key")
    if value is None:
        return None
    value = value.strip()
    if not value or len(value) > _IDEMPOTENCY_KEY_MAX or not value.isascii() or not value.isprintable():
        raise InvalidInputError.for_field(
            "Idempotency-Key", value, f"1 to {_IDEMPOTENCY_KEY_MAX} printable ASCII characters"
        )
    return value


def _visible(status: JobStatus | None, owner: str) -> JobStatus:
    if status is None or status.owner != owner:
        raise _not_found()
    if status.expired:  # by the database's clock, as the sweep that will remove it
        raise _not_found()
    return status


def _make_handlers(generation: str) -> tuple[Any, Any, Any]:
    """This generation's submit, result and cancel handlers."""
    return _submit_handler(generation), _result_handler(generation), _cancel_handler()


def _submit_handler(generation: str) -> Any:
    """``POST``: check the upload and its fields, store the job (once per idempotency key), answer its id."""

    async def submit(request: Request, state: StateDep, owner: OwnerDep) -> SubmitAnswer:
        settings = state.settings
        idempotency_key = _idempotency_key(request)
        try:
            image, fields = await read_submit(request, limit=settings.max_upload_bytes)
            model = choose_model(fields, state.served_models())
            family = model.family if model is not None else None
            seed, params = check_fields(fields, generation, settings.cost_caps(), family)
            job = await run_in_threadpool(
                build_request, image, seed, params, any_size=settings.any_size, max_pixels=settings.max_pixels, family=family
            )
        except PayloadTooLargeError:
            raise
        except InvalidInputError:
            # A key that already names a job came with a request that job's could not have been (it was
            # accepted): say the key was reused rather than what is wrong with the new request.
            if idempotency_key is not None and await run_in_threadpool(
                state.store.job_for_idempotency_key, owner, idempotency_key
            ):
                raise IdempotencyKeyReusedError.for_key(idempotency_key) from None
            raise
        job_id, created = await run_in_threadpool(
            state.store.add_job,
            owner=owner,
            image=image,
            seed=job.seed,
            params={**job.options(), **({"fit": job.fit.value} if "fit" in params else {})},
            model=model.name if model is not None else "",
            idempotency_key=idempotency_key,
            fingerprint=None if idempotency_key is None else request_fingerprint(generation, image, fields),
            max_per_owner=settings.max_queued_per_key,
            max_active=settings.max_queued,
        )
        if created:
            state.statuses.queue_moved()  # it may go ahead of queued jobs (fair turns)
            state.dispatcher.notify(job_id, model.name if model is not None else "")
            state.metrics.jobs_submitted.inc()
        return SubmitAnswer(id=job_id, notice=state.dispatcher.waiting_notice(model.name if model is not None else ""))

    return submit


def _result_handler(generation: str) -> Any:
    """``GET``: the job's progress (202), its stored error, or its video (raw, or JSON as this generation
    spells it)."""
    finish_key = "finishReason" if generation == "v2alpha" else "finish_reason"

    async def result(id: str, request: Request, state: StateDep, owner: OwnerDep) -> Response:
        # async, and answered from the status cache when it can: the hot path of a polling client.
        if not _JOB_ID.match(id):
            raise _not_found()
        cached = state.statuses.cached(id)
        status = _visible(cached if cached is not None else await run_in_threadpool(state.statuses.load, id), owner)
        if status.status in (FAILED, CANCELLED):
            body = error_body(status.error_name or "internal_error", [status.error_message or "the job failed"])
            return JSONResponse(body, status_code=status.error_status or 500)
        if status.status != DONE:
            settings = state.settings
            position = state.statuses.cached_position(status)
            if position is None:
                position = await run_in_threadpool(state.statuses.load_position, status)
            notice = state.dispatcher.waiting_notice(status.model) if position > 0 else None
            return JSONResponse(
                {
                    "id": id,
                    "status": "in-progress",
                    "progress": round(status.progress, 4),
                    "queue_position": position,
                    **({"notice": notice} if notice else {}),
                },
                status_code=202,
                headers={
                    "retry-after": str(_retry_after(status, position, settings.retry_after, settings.retry_after_max))
                },
            )
        stored = await run_in_threadpool(state.store.result, id)
        if stored is None:  # removed between the two reads
            raise _not_found()
        if wants_json(request.headers.get("accept")):
            return JSONResponse(
                {"video": base64.b64encode(stored.video).decode("ascii"), finish_key: stored.finish_reason, "seed": stored.seed}
            )
        return Response(
            stored.video,
            media_type="video/mp4",
            headers={"finish-reason": stored.finish_reason, "seed": str(stored.seed)},
        )

    return result


def _cancel_handler() -> Any:
    """``DELETE`` (img2vid's extension): cancel the caller's job, queued or running."""

    async def cancel(id: str, state: StateDep, owner: OwnerDep) -> CancelAnswer:
        if not _JOB_ID.match(id):
            raise _not_found()
        outcome = await run_in_threadpool(state.store.cancel, id, owner, ttl=state.settings.result_ttl)
        if outcome is None:
            raise _not_found()
        state.statuses.left_queue(id)
        if outcome != CANCELLED:
            raise ConflictError("the job has already finished: its result (or its error) can be fetched")
        return CancelAnswer(id=id)

    return cancel


router = APIRouter()

for _generation, _prefix in GENERATIONS.items():
    _submit, _result, _cancel = _make_handlers(_generation)
    router.add_api_route(
        _prefix,
        _submit,
        methods=["POST"],
        response_model=SubmitAnswer,
        response_model_exclude_none=True,
        responses=_SUBMIT_ERRORS,
        tags=[_generation],
        name=f"{_generation}_start",
        summary="Start an image-to-video job",
        openapi_extra={**form_schema(_generation), "parameters": [IDEMPOTENCY_HEADER]},
    )
    router.add_api_route(
        _prefix + "/result/{id}",
        _result,
        methods=["GET"],
        response_class=Response,
        responses={
            200: {
                "description": "The video: raw MP4 (any accept but application/json; with finish-reason and seed "
                "headers) or JSON.",
                "content": {
                    "video/mp4": {"schema": {"type": "string", "format": "binary"}},
                    "application/json": {"schema": _json_video_schema(_generation)},
                },
                "headers": {
                    "finish-reason": {"description": "With the raw MP4: SUCCESS or CONTENT_FILTERED.", "schema": {"type": "string"}},
                    "seed": {"description": "With the raw MP4: the seed used.", "schema": {"type": "string"}},
                },
            },
            202: {
                "model": InProgressAnswer,
                "description": "Still queued or running; poll again after Retry-After.",
                "headers": {"Retry-After": {"required": True, "description": "Seconds until the next poll.", "schema": {"type": "integer", "minimum": 1}}},
            },
            **_RESULT_ERRORS,
        },
        tags=[_generation],
        name=f"{_generation}_result",
        summary="Fetch a job's result",
    )
    router.add_api_route(
        _prefix + "/result/{id}",
        _cancel,
        methods=["DELETE"],
        response_model=CancelAnswer,
        responses=_CANCEL_ERRORS,
        tags=[_generation],
        name=f"{_generation}_cancel",
        summary="Cancel a job (img2vid's extension)",
        description=(
            "Stops the caller's job: a queued job at once, a running one within a second or one denoising step. "
            "Its result then answers 410 with the error name 'cancelled'. Cancelling a cancelled job answers 200 "
            "again; a finished one 409; an unknown id or another key's job 404."
        ),
    )
