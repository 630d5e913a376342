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
from ..families import SVD
from ..fitting import PROTOCOL_SIZES
from ..jobs.served import ServedModel, protocol_sizes_bind, upload_sizes
from ..jobs.settings import ServerSettings
from ..request import ENGINE_FIELDS, MAX_PROMPT_CHARS, RANGES, range_text
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


class FramesRuleInfo(BaseModel):
    step: int = Field(description="Frame counts are step*k+1 (Wan 4, LTX-Video 8); 1: any count.")
    describe: str


class ModelSizesInfo(BaseModel):
    any_size: bool = Field(description="True: any size up to max_pixels, fitted to the rule with 'fit'; false: exactly one of 'allowed'.")
    allowed: list[tuple[int, int]]
    multiple: int = Field(description="Both sides of the frames the model makes are multiples of this.")
    native: tuple[int, int] = Field(description="The (width, height) the model was trained at; a larger image is scaled down to this area.")
    describe: str


class ModelInfo(BaseModel):
    name: str = Field(description="What a request's model field says.")
    family: str = Field(description="The family's short name (svd-xt, wan2.2-ti2v-5b, ltx-video, ...); 'custom' for a custom engine.")
    title: str
    default: bool = Field(description="The model a request that names none runs on.")
    takes_prompt: bool
    fields: list[str] = Field(description="The request fields this model reads; another is refused by name.")
    defaults: dict[str, int | float | str | None] = Field(description="What each field is when a request leaves it out (null: the model's config decides).")
    frames_rule: FramesRuleInfo
    sizes: ModelSizesInfo


class TextInfo(BaseModel):
    label: str
    help: str
    max_chars: int


class ServerInfo(BaseModel):
    version: str
    auth: bool = Field(description="Whether the protocol routes need an API key.")
    cancel: bool = Field(description="Whether DELETE on a job's result path cancels it.")
    max_upload_bytes: int
    sizes: SizeInfo
    fields: dict[str, FieldInfo]
    models: list[ModelInfo] = Field(description="The models this server serves, the default first.")
    texts: dict[str, TextInfo] = Field(description="The text fields (prompt, negative_prompt) of models that take a prompt.")


_TEXTS: dict[str, tuple[str, str]] = {
    "prompt": ("Prompt", "What should happen in the video (Wan and LTX-Video)."),
    "negative_prompt": ("Negative prompt", "What to avoid; empty: the model's recommended negative prompt."),
}


def text_infos() -> dict[str, TextInfo]:
    return {name: TextInfo(label=label, help=text, max_chars=MAX_PROMPT_CHARS) for name, (label, text) in _TEXTS.items()}


def model_infos(settings: ServerSettings, served: list[ServedModel], generation: str = "v2beta") -> list[ModelInfo]:
    """Each served model's family, fields, defaults, frame rule and sizes, as the server will judge them."""
    infos = []
    for index, model in enumerate(served):
        family = model.family or SVD
        route = GENERATION_DEFAULTS[generation]
        svd = family.kind == "svd"
        defaults: dict[str, int | float | str | None] = {
            "cfg_scale": route["cfg_scale"] if svd else family.default_cfg_scale,
            "frames": family.default_frames,
            "steps": family.default_steps,
            "fps": family.default_fps,
        }
        if svd:
            defaults["motion_bucket_id"] = route["motion_bucket_id"]
        else:
            defaults["negative_prompt"] = family.default_negative_prompt
        protocol = protocol_sizes_bind(model.family, any_size=settings.any_size)
        width, height = family.native_size
        infos.append(
            ModelInfo(
                name=model.name,
                family=family.key if model.family is not None else "custom",
                title=family.title,
                default=index == 0,
                takes_prompt=family.takes_prompt,
                fields=list(family.fields),
                defaults=defaults,
                frames_rule=FramesRuleInfo(step=family.frames_rule.step, describe=family.frames_rule.describe()),
                sizes=ModelSizesInfo(
                    any_size=not protocol,
                    allowed=list(PROTOCOL_SIZES.sizes) if protocol else [],
                    multiple=family.size_multiple,
                    native=(width, height),
                    describe=upload_sizes(model.family, any_size=settings.any_size).describe(),
                ),
            )
        )
    return infos


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
            allowed=range_text(name, high=high),
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
        models=model_infos(settings, state.served_models()),
        texts=text_infos(),
    )
