"""``GET /info``: what a form needs to know about this server before it sends anything.

The playground page builds its fields from this answer: each field's range (``request.RANGES``, capped by
the operator's cost caps), default, help text and the exact words the server uses when it refuses a value,
so the page refuses what the server would refuse, saying the same thing. It also says whether a key is
needed, which image sizes and upload size are accepted, and whether jobs can be cancelled (read from the
app's own routes, so it follows the code rather than a flag someone must remember to set).

This module must never answer anything secret: no key, no database or broker URL, no file path; the route
needs no key so that a page can show its form before the user has typed one.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, FastAPI, Request
from pydantic import BaseModel, Field
from starlette.routing import Match

from .. import __version__
from ..fitting import PROTOCOL_SIZES
from ..jobs.settings import ServerSettings
from ..request import ENGINE_FIELDS, RANGES, range_text
from .deps import StateDep
from .routes import GENERATIONS
from .uploads import GENERATION_DEFAULTS

__all__ = ["router", "ServerInfo", "FieldInfo", "can_cancel", "field_infos"]

#: The protocol's fields first, then the local engine's, in the order a form shows them.
FIELD_ORDER: tuple[str, ...] = ("seed", "cfg_scale", "motion_bucket_id", *ENGINE_FIELDS)

#: Field -> (label, one-line help). What a person needs to choose a value, not the range (that is added).
_TEXT: dict[str, tuple[str, str]] = {
    "seed": ("Seed", "The same seed and settings make the same video; 0 lets the server pick one."),
    "cfg_scale": ("cfg scale", "How closely the video sticks to the image; higher holds it tighter."),
    "motion_bucket_id": ("Motion bucket id", "How much moves; more is more motion."),
    "frames": ("Frames", "Frames in the video; empty: the engine's default."),
    "steps": ("Steps", "Denoising steps; more is slower and usually cleaner. Empty: the engine's default."),
    "fps": ("Frames per second", "The video's frame rate (also a hint to the model). Empty: the engine's default."),
    "noise_aug_strength": ("Noise augmentation", "Noise added to the image; more frees the video from it. Empty: the engine's default."),
    "min_guidance_scale": ("Min guidance scale", "Guidance on the first frame (it rises to cfg scale by the last). Empty: the engine's default."),
    "decode_chunk_size": ("Decode chunk size", "Frames decoded at once; fewer needs less memory. Empty: the engine's default."),
}

#: Fields whose upper bound an operator caps to bound a job's cost -> the setting that caps it.
_CAPS: dict[str, str] = {"frames": "max_frames", "steps": "max_steps", "decode_chunk_size": "max_decode_chunk"}


class FieldInfo(BaseModel):
    label: str
    help: str
    type: Literal["integer", "number"]
    min: int | float
    max: int | float = Field(description="The range's upper bound, lowered to the server's cost cap where one applies.")
    default: int | float | None = Field(description="The value used when the field is absent; null: the engine's default.")
    allowed: str = Field(description="The server's words for the range, as in its refusal '<field> must be <allowed>; got <value>'.")
    engine: bool = Field(description="img2vid's local-engine field (not in Stability's protocol).")


class SizeInfo(BaseModel):
    any_size: bool = Field(description="True: any size up to max_pixels; false: exactly one of 'allowed'.")
    allowed: list[tuple[int, int]]
    describe: str = Field(description="The allowed sizes in the server's words.")
    max_pixels: int


class ServerInfo(BaseModel):
    version: str
    auth: bool = Field(description="Whether the protocol routes need an API key.")
    cancel: bool = Field(description="Whether DELETE on a job's result path cancels it.")
    max_upload_bytes: int
    sizes: SizeInfo
    fields: dict[str, FieldInfo]


def field_infos(settings: ServerSettings, generation: str = "v2beta") -> dict[str, FieldInfo]:
    """Every field's range, default and help, with the cost caps applied."""
    defaults: dict[str, float | int] = {"seed": 0, **GENERATION_DEFAULTS[generation]}
    infos: dict[str, FieldInfo] = {}
    for name in FIELD_ORDER:
        kind, low, high = RANGES[name]
        if name in _CAPS:
            high = min(high, getattr(settings, _CAPS[name]))
        label, help_text = _TEXT[name]
        infos[name] = FieldInfo(
            label=label,
            help=help_text,
            type="integer" if kind is int else "number",
            min=low,
            max=high,
            default=defaults.get(name),
            allowed=range_text(kind, low, high),
            engine=name in ENGINE_FIELDS,
        )
    return infos


def can_cancel(app: FastAPI) -> bool:
    """Whether a ``DELETE`` on a v2beta result path reaches a route (a cancel route).

    Asked the way the app itself routes a request (Starlette's ``matches``, a full match being path and
    method), so routers included under other routers count too.
    """
    scope = {"type": "http", "method": "DELETE", "path": GENERATIONS["v2beta"] + "/result/" + "0" * 64, "root_path": ""}
    return any(route.matches(dict(scope))[0] is Match.FULL for route in app.router.routes)


router = APIRouter(tags=["operations"])


@router.get("/info", summary="What a client's form needs: fields, sizes, limits, auth, cancel", response_model=ServerInfo)
async def info(request: Request, state: StateDep) -> ServerInfo:
    settings = state.settings
    return ServerInfo(
        version=__version__,
        auth=settings.auth,
        cancel=can_cancel(request.app),
        max_upload_bytes=settings.max_upload_bytes,
        sizes=SizeInfo(
            any_size=settings.any_size,
            allowed=list(PROTOCOL_SIZES.sizes),
            describe=PROTOCOL_SIZES.describe(),
            max_pixels=settings.max_pixels,
        ),
        fields=field_infos(settings),
    )
