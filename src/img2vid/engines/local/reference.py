"""diffusers' own ``StableVideoDiffusionPipeline`` on an engine's loaded components: the reference.

The local engine promises diffusers' frames (within 1/255 in fp32 on a CPU) at diffusers' speed or
better. The parity tests and ``bench/engine.py`` hold it to that by running this pipeline on the very
modules the engine runs, so any difference is the engine's, not the weights'. Nothing in a front door
or a job runs it.
"""

from __future__ import annotations

from typing import Any

from .components import Components

__all__ = ["stock_pipeline"]


def stock_pipeline(parts: Components) -> Any:
    """diffusers' pipeline on ``parts`` (sharing their modules, with a scheduler of its own), progress
    bar off."""
    from diffusers import StableVideoDiffusionPipeline
    from transformers import CLIPImageProcessor

    pipe = StableVideoDiffusionPipeline(
        vae=parts.vae,
        image_encoder=parts.image_encoder,
        unet=parts.unet,
        scheduler=parts.new_scheduler(),
        feature_extractor=CLIPImageProcessor(crop_size=224, size={"shortest_edge": 224}),
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe
