"""Fitting lands on the right size for every shape, in every mode, and nowhere else resizes."""

from __future__ import annotations

import numpy as np
import pytest

from img2vid.errors import InvalidInputError
from img2vid.fitting import PROTOCOL_SIZES, FitMode, FixedSizes, MultipleOf, fit_image
from support.images import gradient

CASES = [
    ((1920, 1080), (1024, 576)),  # landscape 16:9
    ((1080, 1920), (576, 1024)),  # portrait 9:16
    ((500, 500), (768, 768)),  # square, upscaled
    ((1200, 900), (1024, 576)),  # 4:3 ties 16:9 and 1:1: orientation decides
    ((900, 1200), (576, 1024)),
    ((1100, 1000), (768, 768)),  # near-square
    ((5000, 200), (1024, 576)),  # extreme panorama
    ((200, 5000), (576, 1024)),  # extreme tower
    ((1024, 576), (1024, 576)),  # already allowed
]


@pytest.mark.parametrize("mode", [FitMode.CROP, FitMode.PAD, FitMode.STRETCH])
@pytest.mark.parametrize(("size", "expected"), CASES)
def test_protocol_fitting_lands_on_the_nearest_allowed_size(size, expected, mode) -> None:
    image = gradient(*size)
    fitted = fit_image(image, PROTOCOL_SIZES, mode)
    assert (fitted.shape[1], fitted.shape[0]) == expected
    assert fitted.dtype == np.uint8 and fitted.shape[2] == 3


def test_allowed_size_is_returned_untouched() -> None:
    image = gradient(768, 768)
    assert fit_image(image, PROTOCOL_SIZES, FitMode.STRICT) is image


def test_strict_lists_the_allowed_sizes() -> None:
    with pytest.raises(InvalidInputError) as caught:
        fit_image(gradient(800, 600), PROTOCOL_SIZES, "strict")
    text = str(caught.value)
    assert "800x600" in text and "1024x576, 576x1024 or 768x768" in text
    assert caught.value.field == "image"


def test_crop_keeps_the_center_and_pad_keeps_everything() -> None:
    # A wide image whose left and right thirds are red and the middle blue.
    image = np.zeros((576, 3072, 3), dtype=np.uint8)
    image[:, :1024, 0] = 255
    image[:, 1024:2048, 2] = 255
    image[:, 2048:, 0] = 255
    cropped = fit_image(image, FixedSizes(((768, 768),)), "crop")
    assert cropped[:, :, 2].mean() > 250 and cropped[:, :, 0].mean() < 5  # only the blue middle remains
    padded = fit_image(image, FixedSizes(((768, 768),)), "pad")
    assert padded[0].max() == 0 and padded[-1].max() == 0  # black bars top and bottom
    middle = padded[384]
    assert middle[:10, 0].mean() > 200 and middle[-10:, 0].mean() > 200  # both red ends still there
    assert middle[374:394, 2].mean() > 200  # and the blue middle


def test_stretch_distorts_instead_of_cropping() -> None:
    image = np.zeros((100, 400, 3), dtype=np.uint8)
    image[:, :10] = 255  # a white bar at the far left survives a stretch, not a crop
    stretched = fit_image(image, FixedSizes(((200, 200),)), "stretch")
    cropped = fit_image(image, FixedSizes(((200, 200),)), "crop")
    assert stretched[:, 0].mean() > 200
    assert cropped[:, 0].mean() < 10


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ((1024, 576), (1024, 576)),  # already multiples of 64, within budget: kept
        ((512, 512), (512, 512)),
        ((1000, 600), (960, 576)),  # same aspect, nearest multiples of 64
        ((1920, 1080), (1024, 576)),  # too many pixels: scaled into the budget
        ((600, 1000), (576, 960)),
        ((777, 777), (768, 768)),
    ],
)
def test_multiple_of_64_rule(size, expected) -> None:
    rule = MultipleOf(64, max_pixels=1024 * 576)
    target = rule.target_for(*size)
    assert target == expected
    assert rule.allows(*target)
    fitted = fit_image(gradient(*size), rule, "crop")
    assert (fitted.shape[1], fitted.shape[0]) == expected


def test_multiple_of_rule_in_strict_mode_names_the_rule() -> None:
    with pytest.raises(InvalidInputError, match="multiples of 64"):
        fit_image(gradient(100, 100), MultipleOf(64), "strict")
