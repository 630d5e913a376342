"""``GET /fit-plan``: how this server fits an image of a given size for one of its models.

The playground's preview asks here instead of fitting a second time in JavaScript: the size the image
becomes, the part of it that is kept (``crop``), where the resized picture lands (``pad``), and for
``strict`` whether the size is accepted as it is, with the server's own refusal when it is not. The page
draws and uploads exactly this plan, so what it shows is what the server does.

The plan comes from :func:`img2vid.fitting.plan_fit`, the one place that fits, with the size rule the
submit holds an upload to: the protocol's three sizes for a Stable Video Diffusion model (unless the
server takes any size), the family's own rule (multiples within its area) for the others. This module
must never do arithmetic on sizes itself, and, like ``/info``, needs no key and answers nothing about jobs
or keys.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from ..errors import InvalidInputError
from ..fitting import FitMode, FixedSizes, SizeRule, parse_fit_mode, plan_fit
from ..jobs.served import ServedModel, find_served, upload_sizes
from ..jobs.settings import ServerSettings
from .deps import StateDep
from .openapi import error_answers

__all__ = ["router", "FitPlanAnswer", "size_rule_for"]

#: The largest side a plan is asked for: far past any camera, small enough to keep the search cheap.
MAX_SIDE = 65536

Box = tuple[int, int, int, int]


class FitPlanAnswer(BaseModel):
    model: str = Field(description="The served model the plan is for (the default one when none was named).")
    fit: FitMode
    allowed: bool = Field(description="False only for fit=strict and a size the model does not take as it is.")
    message: str | None = Field(description="The server's refusal, in its own words, when allowed is false.")
    unchanged: bool = Field(description="The image is a size the model takes: it is used as it is.")
    target: tuple[int, int] | None = Field(description="[width, height] the image becomes; null when refused.")
    source_box: Box | None = Field(description="[x, y, w, h] of the source that is kept (less than all of it for crop).")
    placed_box: Box | None = Field(description="[x, y, w, h] in the target where that part lands (inside bars for pad).")


def size_rule_for(settings: ServerSettings, model: str | None, served_models: Sequence[ServedModel]) -> tuple[str, SizeRule]:
    """The served model a request names (None: the default) and the sizes its submit accepts."""
    served = find_served(served_models, model)
    return served.name, upload_sizes(served.family, any_size=settings.any_size)


def _size(text: str, rule: SizeRule) -> tuple[int, int]:
    """A chosen target size, ``WxH``, that the model must take as it is."""
    width, sep, height = text.partition("x")
    if sep and width.isascii() and width.isdigit() and height.isascii() and height.isdigit():
        size = (int(width), int(height))
        if rule.allows(*size):
            return size
    raise InvalidInputError.for_field("size", text, rule.describe())


router = APIRouter(tags=["operations"])


@router.get(
    "/fit-plan",
    summary="How an image of this size is fitted for a model (no key needed)",
    response_model=FitPlanAnswer,
    responses=error_answers(400),
)
async def fit_plan(
    state: StateDep,
    width: Annotated[int, Query(ge=1, le=MAX_SIDE, description="The image's width in pixels.")],
    height: Annotated[int, Query(ge=1, le=MAX_SIDE, description="The image's height in pixels.")],
    fit: Annotated[
        str, Query(description="crop, pad, stretch or strict.", json_schema_extra={"enum": [mode.value for mode in FitMode]})
    ] = FitMode.CROP.value,
    model: Annotated[str | None, Query(description="A served model's name; absent: the default model.")] = None,
    size: Annotated[str | None, Query(description="A target size the model takes, WxH; absent: the nearest.")] = None,
) -> FitPlanAnswer:
    mode = parse_fit_mode(fit or FitMode.CROP)  # sent empty: the default, as every form field
    name, rule = size_rule_for(state.settings, model, state.served_models())
    try:
        if size:  # a size the model does not take is a refused plan, in the server's words, like strict's
            rule = FixedSizes((_size(size, rule),))
        plan = plan_fit(width, height, rule, mode)
    except InvalidInputError as refusal:
        return FitPlanAnswer(
            model=name, fit=mode, allowed=False, message=refusal.message, unchanged=False, target=None, source_box=None, placed_box=None
        )
    return FitPlanAnswer(
        model=name,
        fit=mode,
        allowed=True,
        message=None,
        unchanged=plan.unchanged,
        target=plan.target,
        source_box=plan.source_box,
        placed_box=plan.placed_box,
    )
