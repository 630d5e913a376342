"""Reading a finished job's answer: both result forms, the finish reason and the seed.

The form is judged by the answer's ``content-type``, not by what was asked for: ``video/*`` (or
``application/octet-stream``) is the raw MP4 with ``finish-reason`` and ``seed`` headers; JSON carries the
MP4 in base64 with ``finish_reason`` (``finishReason`` in the older generation) and ``seed``. A
``CONTENT_FILTERED`` result raises :class:`~img2vid.errors.ContentFilteredError`: this module never hands a
filtered video to anyone. Frame rate and count come from the file itself, never from an assumption.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

import httpx

from ... import errors
from ...redact import redact
from ...video import FINISH_CONTENT_FILTERED, FINISH_SUCCESS, Video

__all__ = ["video_from_response", "parse_progress"]


def _media_type(response: httpx.Response) -> str:
    return response.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def _seed(value: Any) -> int | None:
    try:
        seed = int(str(value).strip())
    except (TypeError, ValueError):
        return None
    return seed if seed >= 0 else None


def _check_finish(reason: str | None) -> str:
    finish = (reason or FINISH_SUCCESS).strip().upper()
    if finish == FINISH_CONTENT_FILTERED:
        raise errors.ContentFilteredError(
            "the server finished the job but filtered the result (finish reason CONTENT_FILTERED); "
            "no video is handed over: try another image or seed"
        )
    if finish != FINISH_SUCCESS:
        raise errors.ServiceError(f"the job ended with finish reason {redact(finish)[:60]!r} instead of SUCCESS")
    return finish


def _decode(data: bytes, *, seed: int | None, finish: str) -> Video:
    if not data:
        raise errors.ServiceError("the server answered 200 but sent no video")
    try:
        return Video.from_bytes(data, seed=seed, finish_reason=finish)
    except errors.Img2VidError as exc:
        raise errors.ServiceError(f"the server's video could not be decoded: {exc.message}") from exc


def video_from_response(response: httpx.Response, *, fallback_seed: int | None) -> Video:
    """The video in a 200 answer to a poll, in either form."""
    media = _media_type(response)
    if media == "application/json" or media.endswith("+json"):
        try:
            payload = json.loads(response.content)
        except (ValueError, UnicodeDecodeError) as exc:
            raise errors.ServiceError("the server's result is not valid JSON") from exc
        if not isinstance(payload, dict):
            raise errors.ServiceError("the server's result is JSON but not an object")
        reason = payload.get("finish_reason", payload.get("finishReason"))
        finish = _check_finish(reason if isinstance(reason, str) else None)
        encoded = payload.get("video")
        if not isinstance(encoded, str):
            raise errors.ServiceError("the server's JSON result has no 'video' field")
        try:
            data = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise errors.ServiceError("the server's JSON result has a 'video' that is not base64") from exc
        seed = _seed(payload.get("seed"))
        return _decode(data, seed=seed if seed is not None else fallback_seed, finish=finish)

    if media.startswith("video/") or media in ("application/octet-stream", ""):
        headers = response.headers
        finish = _check_finish(headers.get("finish-reason") or headers.get("finish_reason"))
        seed = _seed(headers.get("seed"))
        return _decode(response.content, seed=seed if seed is not None else fallback_seed, finish=finish)

    raise errors.ServiceError(
        f"the server answered 200 with {redact(media)[:60]!r} instead of a video: is the URL an image-to-video server?"
    )


def parse_progress(response: httpx.Response) -> float | None:
    """The optional ``progress`` fraction (0..1) an img2vid server adds to a 202 answer."""
    try:
        payload = json.loads(response.content)
    except (ValueError, UnicodeDecodeError):
        return None
    value = payload.get("progress") if isinstance(payload, dict) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if value != value:  # NaN
        return None
    return max(0.0, min(1.0, float(value)))
