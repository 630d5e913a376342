"""Everything checked before a job exists: body size, form shape, image type and size, and every field.

Form fields arrive as text and are read as the protocol's numbers, nothing looser: an integer is ASCII
digits with an optional leading ``-``, a number is plain decimal notation (an optional exponent allowed).
Python's ``int()`` and ``float()`` would also take ``1_000``, ``+5``, Unicode digits, padding and ``nan``;
a client that sends those gets a 400 naming the field, never a silently different value. An empty field
means the field's default, for every field. The server's cost caps (``max_frames``, ``max_steps``,
``max_decode_chunk``) are checked here too, so an over-cap request never becomes a job.

The body is read in chunks and refused with 413 as soon as it passes the limit (the rest is discarded
unread, up to a bound, so the client still receives the answer); the image's type is sniffed from its
first bytes; its pixel count is read from the header before any decoding, so a decompression bomb is
refused in milliseconds without allocating its canvas. This module must never keep more than the limit
in memory, and never let a Pillow or multipart exception escape as anything but an ``InvalidInputError``.

Model families: ``model`` names one of the served models (absent: the default, the first), and that
model's family decides the rest before a job exists: its fields (a prompt for Wan and LTX-Video, the motion
bucket for SVD; another is a 400 naming it), its frame rule, and its sizes (the protocol's three bind SVD
alone; another family takes any size up to the pixel cap and fits it to its rule with ``fit``). The text
fields ``prompt`` and ``negative_prompt`` are at most ``MAX_PROMPT_CHARS`` characters.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import Any

from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request

from ..errors import InvalidInputError, PayloadTooLargeError
from ..families import Family, check_family_fields
from ..fitting import PROTOCOL_SIZES, parse_fit_mode
from ..images import open_image_bytes
from ..jobs.served import ServedModel, find_served, protocol_sizes_bind
from ..jobs.settings import CAP_SETTINGS
from ..request import (
    DEFAULT_CFG_SCALE,
    DEFAULT_MOTION_BUCKET_ID,
    ENGINE_FIELDS,
    MAX_SEED,
    RANGES,
    TEXT_FIELDS,
    VideoRequest,
    check_field,
    check_text,
    range_text,
)

__all__ = [
    "GENERATION_DEFAULTS",
    "CLIENT_HEADERS",
    "read_body",
    "read_submit",
    "parse_submit_form",
    "check_fields",
    "FORM_FIELDS",
    "parse_form_number",
    "build_request",
    "sniff_image_type",
    "request_fingerprint",
    "TEXT_FORM_FIELDS",
    "choose_model",
]

#: The documented defaults of each route generation (v2alpha's were 2.5 and 40).
GENERATION_DEFAULTS: dict[str, dict[str, float | int]] = {
    "v2beta": {"cfg_scale": DEFAULT_CFG_SCALE, "motion_bucket_id": DEFAULT_MOTION_BUCKET_ID},
    "v2alpha": {"cfg_scale": 2.5, "motion_bucket_id": 40},
}
#: Optional client headers the protocol bounds at 256 characters.
CLIENT_HEADERS = ("stability-client-id", "stability-client-user-id", "stability-client-version")
#: How much of an oversized body is read and thrown away so the client can read the 413.
_DRAIN_LIMIT = 64 * 1024 * 1024

ALLOWED_TYPES = "a PNG, JPEG or WebP image"
#: The number fields of the start request.
FORM_FIELDS: tuple[str, ...] = ("seed", "cfg_scale", "motion_bucket_id", *ENGINE_FIELDS)
#: Its text fields (img2vid's extension, named as the hosted services name them). The ``image`` file part
#: aside, every other part is ignored.
TEXT_FORM_FIELDS: tuple[str, ...] = ("model", *TEXT_FIELDS, "fit")

#: The protocol's integer: ASCII digits, an optional leading minus (so ``-5`` reaches the range check).
_INTEGER = re.compile(r"-?[0-9]+")
#: The protocol's number: plain decimal notation, as JSON and Python print numbers (``1.8``, ``.5``, ``1e-05``).
_NUMBER = re.compile(r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")


def check_client_headers(headers: Any) -> None:
    for name in CLIENT_HEADERS:
        value = headers.get(name)
        if value is not None and len(value) > 256:
            raise InvalidInputError.for_field(name, value, "at most 256 characters")


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, or :class:`PayloadTooLargeError` once it passes ``limit`` bytes."""
    too_large = PayloadTooLargeError(
        f"the request is larger than {limit // (1024 * 1024)} MiB; send a smaller image",
        field="image",
        allowed=f"at most {limit} bytes",
    )
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        await _drain(request, int(declared))
        raise too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            chunks.clear()
            await _drain(request, _DRAIN_LIMIT)
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


async def _drain(request: Request, declared: int) -> None:
    """Read and discard the rest of a refused body (bounded), so the client is not cut off mid-send."""
    if declared > _DRAIN_LIMIT:
        return
    seen = 0
    try:
        async for chunk in request.stream():
            seen += len(chunk)
            if seen > _DRAIN_LIMIT:
                return
    except Exception:  # noqa: BLE001 - the client went away or the stream was already read; nothing to drain
        return


async def _once(body: bytes) -> AsyncGenerator[bytes, None]:
    yield body


async def parse_submit_form(body: bytes, headers: Any) -> tuple[bytes, dict[str, Any]]:
    """The image part's bytes and the raw text of the fields img2vid knows (:data:`FORM_FIELDS`); any
    other part is ignored, as the hosted service ignored fields it did not know."""
    content_type = headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        raise InvalidInputError(
            "the start request must be multipart/form-data with an 'image' file part",
            field="content-type",
            value=content_type,
            allowed="multipart/form-data",
        )
    parser = MultiPartParser(headers, _once(body), max_files=4, max_fields=64, max_part_size=64 * 1024)
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise InvalidInputError(f"the multipart body could not be read: {exc}", field="body") from None
    except Exception as exc:  # noqa: BLE001 - python-multipart raises assorted errors on garbage
        raise InvalidInputError("the multipart body is malformed", field="body") from exc
    try:
        images = form.getlist("image")
        if not images:
            raise InvalidInputError("image is required: send it as a file part named 'image'", field="image", allowed=ALLOWED_TYPES)
        if len(images) > 1:
            raise InvalidInputError("send exactly one image", field="image", allowed="one file part named 'image'")
        image = images[0]
        if not isinstance(image, UploadFile):
            raise InvalidInputError(
                "image must be a file part (with a filename), not a text field", field="image", allowed=ALLOWED_TYPES
            )
        data = await image.read()
        fields: dict[str, Any] = {}
        for key, value in form.multi_items():
            if key not in FORM_FIELDS and key not in TEXT_FORM_FIELDS:
                continue  # ignored, whatever it holds, as the hosted service ignored fields it did not know
            if isinstance(value, UploadFile):
                raise InvalidInputError(f"{key} must be a text field, not a file", field=key)
            if key in fields:
                raise InvalidInputError(f"{key} was sent more than once", field=key)
            fields[key] = value
        return data, fields
    finally:
        await form.close()


def parse_form_number(name: str, text: str) -> int | float:
    """A form field's text as the protocol's integer or number, range-checked, or a 400 naming the field.

    ``re.fullmatch`` with explicit ``[0-9]`` classes is the whole rule: ``str.isdigit`` and ``\\d`` would
    admit non-ASCII digits, and ``int()`` alone admits underscores, a ``+`` and surrounding whitespace.
    """
    kind = RANGES[name][0]
    pattern, notation = (_INTEGER, "in ASCII digits") if kind is int else (_NUMBER, "in plain decimal notation")
    if pattern.fullmatch(text) is None:
        raise InvalidInputError.for_field(name, text, f"{range_text(name)}, written {notation}")
    return check_field(name, text)


def _check_cap(name: str, value: int | float, caps: Mapping[str, int]) -> None:
    cap = caps.get(name)
    if cap is not None and value > cap:
        setting = CAP_SETTINGS.get(name, name)
        raise InvalidInputError(
            f"{name} must be at most {cap} on this server (its cost cap, IMG2VID_{setting.upper()}); got {value}",
            field=name,
            value=value,
            allowed=f"at most {cap}",
        )


def choose_model(fields: Mapping[str, Any], served: Sequence[ServedModel] | None) -> ServedModel | None:
    """The served model the ``model`` field names (absent or empty: the default), or a 400 listing them;
    None when the server has no list (a test's app)."""
    if not served:
        if fields.get("model"):
            raise InvalidInputError.for_field("model", fields["model"], "no model field: this server serves one model")
        return None
    return find_served(served, fields.get("model"))


def check_fields(
    fields: dict[str, Any], generation: str, caps: Mapping[str, int] | None = None, family: Family | None = None
) -> tuple[int, dict[str, int | float | str]]:
    """The seed to use (a random one chosen now when 0 or absent) and every option the job runs with,
    range-checked, within the server's cost ``caps`` (field -> largest value allowed) and the rules of the
    model's ``family`` (None: SVD's protocol). Absent or empty: the default (SVD's route defaults for cfg
    scale and motion bucket; the model's own for the rest)."""
    defaults = GENERATION_DEFAULTS[generation]
    caps = caps or {}
    given: dict[str, Any] = {}
    for name in FORM_FIELDS:
        raw = fields.get(name)
        if raw is None or raw == "":
            continue
        given[name] = value = parse_form_number(name, raw)
        _check_cap(name, value, caps)
    for name in TEXT_FIELDS:
        text = check_text(name, fields.get(name))
        if text is not None:
            given[name] = text
    params: dict[str, int | float | str] = {}
    if family is None or family.kind == "svd":
        params.update({name: given.get(name, defaults[name]) for name in ("cfg_scale", "motion_bucket_id")})
    elif "cfg_scale" in given:
        params["cfg_scale"] = given["cfg_scale"]
    if family is not None:
        check_family_fields(family, given)
        frames = given.get("frames", family.default_frames)
        if frames is not None:
            family.check_frames(int(frames))
            if "frames" not in given and "frames" in caps and frames > caps["frames"]:
                raise InvalidInputError(
                    f"frames: {family.title} makes {frames} frames by default, more than this server's cost cap of "
                    f"{caps['frames']} (IMG2VID_MAX_FRAMES): send frames, {family.frames_rule.describe()}, at most {caps['frames']}",
                    field="frames",
                    value=frames,
                    allowed=f"at most {caps['frames']}",
                )
    if fields.get("fit"):
        params["fit"] = parse_fit_mode(fields["fit"]).value
    params.update({name: given[name] for name in (*ENGINE_FIELDS, *TEXT_FIELDS) if name in given})
    seed = int(given.get("seed", 0))
    if seed == 0:
        # Chosen and stored at submit, so a job re-run after a crash makes the same video.
        seed = secrets.randbelow(MAX_SEED) + 1
    return seed, params


def request_fingerprint(generation: str, image: bytes, fields: Mapping[str, Any]) -> str:
    """SHA-256 of a submit as its client sent it: the route generation, the image bytes and every field's
    value (read as the protocol's number, so ``1.8`` and ``1.80`` are one request; an empty field is an
    absent one). Kept with the job, so an Idempotency-Key that comes again with another request is told apart
    from a retry. Call it after :func:`check_fields` accepted the fields."""
    given: dict[str, Any] = {name: parse_form_number(name, fields[name]) for name in FORM_FIELDS if fields.get(name) not in (None, "")}
    given.update({name: fields[name] for name in TEXT_FORM_FIELDS if fields.get(name) not in (None, "")})
    text = json.dumps({"generation": generation, "image": hashlib.sha256(image).hexdigest(), "fields": given}, sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def sniff_image_type(data: bytes) -> str | None:
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


async def read_submit(request: Request, *, limit: int) -> tuple[bytes, dict[str, Any]]:
    """Read and parse the submit body (size-limited); the image and fields are not yet checked."""
    check_client_headers(request.headers)
    body = await read_body(request, limit)
    return await parse_submit_form(body, request.headers)


def build_request(
    data: bytes,
    seed: int,
    params: Mapping[str, int | float | str],
    *,
    any_size: bool,
    max_pixels: int,
    family: Family | None = None,
) -> VideoRequest:
    """The one :class:`VideoRequest` of a submit, once the upload is known to be a PNG, JPEG or WebP of an
    allowed size: the pixel count is read from the header before anything is decoded (the bomb guard), the
    exact size checked (the protocol's three sizes bind SVD models alone, unless ``any_size``: another
    family fits any size to its own rule), and the image decoded once, whole, so a damaged file is a 400 now
    rather than a failed job later. The store keeps what the request holds."""
    if sniff_image_type(data) is None:
        raise InvalidInputError(
            f"image must be {ALLOWED_TYPES}; the upload is none of these", field="image", allowed=ALLOWED_TYPES
        )
    with open_image_bytes(data, field="image", max_pixels=max_pixels) as img:
        width, height = int(img.size[0]), int(img.size[1])
        if protocol_sizes_bind(family, any_size=any_size) and not PROTOCOL_SIZES.allows(width, height):
            raise InvalidInputError.for_field("image", f"{width}x{height}", PROTOCOL_SIZES.describe())
        options: dict[str, Any] = dict(params)  # each value checked and typed by check_fields
        return VideoRequest(image=img, seed=seed, **options)
