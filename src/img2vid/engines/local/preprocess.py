"""The image encoder's input: SVD's antialiased downscale to 224x224 and CLIP's normalisation, in torch.

SVD was trained with CLIP inputs made by a Gaussian blur (sigma from the scale factor, as kornia's
antialiased resize does) followed by an align-corners bicubic resize; plain bilinear resizing changes
the embedding. diffusers does the same; doing it here with torch ops keeps the work on the device and
avoids transformers' image processor (which wants torchvision). Must stay numerically identical to
diffusers' preprocessing: the parity test compares the two.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["clip_pixels", "antialiased_resize"]

CLIP_SIZE = (224, 224)


def _gaussian_kernel(size: int, sigma: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    x = torch.arange(size, dtype=dtype, device=device) - size // 2
    if size % 2 == 0:
        x = x + 0.5
    kernel = torch.exp(-x.pow(2.0) / (2 * sigma**2))
    return kernel / kernel.sum()


def _blur(image: torch.Tensor, sizes: tuple[int, int], sigmas: tuple[float, float]) -> torch.Tensor:
    """Separable Gaussian blur with reflect padding: along the width first, then the height."""
    channels = image.shape[1]
    out = image
    for axis, (size, sigma) in ((1, (sizes[1], sigmas[1])), (0, (sizes[0], sigmas[0]))):
        kernel = _gaussian_kernel(size, sigma, image.dtype, image.device)
        shape = (1, size) if axis == 1 else (size, 1)
        weight = kernel.view(1, 1, *shape).expand(channels, 1, *shape)
        front, rear = (size - 1) // 2, (size - 1) - (size - 1) // 2
        pad = (front, rear, 0, 0) if axis == 1 else (0, 0, front, rear)
        out = F.conv2d(F.pad(out, pad, mode="reflect"), weight, groups=channels)
    return out


def antialiased_resize(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Blur by the scale factor, then bicubic (align corners) to ``size`` (height, width)."""
    height, width = image.shape[-2:]
    factors = (height / size[0], width / size[1])
    sigmas = (max((factors[0] - 1.0) / 2.0, 0.001), max((factors[1] - 1.0) / 2.0, 0.001))
    sizes = [int(max(2.0 * 2 * s, 3)) for s in sigmas]
    sizes = [k + 1 if k % 2 == 0 else k for k in sizes]
    blurred = _blur(image, (sizes[0], sizes[1]), sigmas)
    return F.interpolate(blurred, size=size, mode="bicubic", align_corners=True)


def clip_pixels(image01: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """CLIP's input from a B×3×H×W image in [0, 1]: resized in [-1, 1] as SVD was trained, then normalised."""
    pixels = antialiased_resize(image01 * 2.0 - 1.0, CLIP_SIZE)
    pixels = (pixels + 1.0) / 2.0
    mean_t = torch.tensor(mean, dtype=pixels.dtype, device=pixels.device).view(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=pixels.dtype, device=pixels.device).view(1, 3, 1, 1)
    return (pixels - mean_t) / std_t
