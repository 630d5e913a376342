"""Regional compilation: ``torch.compile`` on each residual and attention block of the UNet and VAE decoder.

Why blocks and not the whole UNet: blocks of the same shape share one compiled graph, so a cold compile
costs a fraction of a whole-model one (which took 195 s for SVD-XT's UNet on an H100) while the fusions
that make compiling pay (GroupNorm, GELU, LayerNorm and element-wise work inside each block) are all
there; the glue between blocks (concatenations, up/down-sampling convolutions) stays eager, where cuDNN
already runs it well. It also leaves the UNet's own forward in Python, so the ``fast`` mode can skip its
deep blocks on some steps without a second compiled graph. Compiling is marked here and happens on first
use; this module never runs a model and never touches the compile cache (``compile_cache`` does).
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["compile_regions", "regions_of", "RECOMPILE_LIMIT"]

#: Distinct block shapes a model needs compiled (SVD-XT's UNet and decoder have a few dozen); torch's
#: default of 8 per code object would silently leave the rest eager.
RECOMPILE_LIMIT = 128
_REGION_LISTS = ("resnets", "attentions")
_MARK = "_img2vid_compiled"


def regions_of(root: torch.nn.Module) -> list[torch.nn.Module]:
    """The blocks of ``root`` to compile: every member of a ``resnets`` or ``attentions`` list, outermost only."""
    chosen: list[torch.nn.Module] = []
    chosen_names: list[str] = []
    for name, module in root.named_modules():
        if not isinstance(module, torch.nn.ModuleList) or name.rsplit(".", 1)[-1] not in _REGION_LISTS:
            continue
        if any(name.startswith(parent + ".") for parent in chosen_names):
            continue  # already inside a compiled block
        for index, block in enumerate(module):
            chosen.append(block)
            chosen_names.append(f"{name}.{index}")
    return chosen


def compile_regions(parts: Any) -> int:
    """Mark the UNet's and the VAE decoder's blocks for compiling (static shapes); the number marked.

    Idempotent: a block already marked is left alone, so placing the same components twice is harmless.
    """
    limit_name = "recompile_limit" if hasattr(torch._dynamo.config, "recompile_limit") else "cache_size_limit"
    setattr(torch._dynamo.config, limit_name, max(getattr(torch._dynamo.config, limit_name), RECOMPILE_LIMIT))
    count = 0
    for root in (parts.unet, parts.vae.decoder):
        for block in regions_of(root):
            if getattr(block, _MARK, False):
                continue
            # Static shapes: each size a server sees (1024x576, 576x1024, 768x768) gets its own specialised
            # kernels rather than slower shape-generic ones.
            block.compile(dynamic=False)
            setattr(block, _MARK, True)
            count += 1
    return count
