"""Full-size architectures of the text-conditioned families, as plain config dicts, for GPU benchmarks.

Filled in from the published diffusers configs; data only: this module must never import torch.
"""

from __future__ import annotations

from typing import Any

__all__ = ["FULL_SIZE"]

#: Family key -> component name -> config (constructor keyword arguments).
FULL_SIZE: dict[str, dict[str, Any]] = {}
