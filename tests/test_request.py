"""VideoRequest: every field is checked, and every error names the field, the value and the range."""

from __future__ import annotations

import io
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from img2vid import VideoRequest
from img2vid.errors import InvalidInputError
from img2vid.fitting import FitMode
from support.images import gradient, png_bytes

IMAGE = gradient(64, 48)

BAD_VALUES = [
    ("seed", -1, "0 to 4294967294"),
    ("seed", 4294967295, "0 to 4294967294"),
    ("seed", 1.5, "0 to 4294967294"),
    ("seed", "abc", "0 to 4294967294"),
    ("cfg_scale", 10.5, "0.0 to 10.0"),
    ("cfg_scale", -0.1, "0.0 to 10.0"),
    ("cfg_scale", float("nan"), "0.0 to 10.0"),
    ("motion_bucket_id", 0, "1 to 255"),
    ("motion_bucket_id", 256, "1 to 255"),
    ("motion_bucket_id", True, "1 to 255"),
    ("frames", 0, "1 to 257"),
    ("steps", 0, "1 to 200"),
    ("fps", 61, "1 to 60"),
    ("noise_aug_strength", 1.5, "0.0 to 1.0"),
    ("min_guidance_scale", -1, "0.0 to 10.0"),
    ("decode_chunk_size", 0, "1 to 128"),
]


@pytest.mark.parametrize(("field", "value", "allowed"), BAD_VALUES)
def test_each_bad_value_names_its_field_value_and_range(field: str, value: object, allowed: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        VideoRequest(image=IMAGE, **{field: value})
    error = caught.value
    assert error.field == field
    assert str(error).startswith(field)
    assert allowed in str(error)
    assert str(value) in str(error) or repr(value) in str(error)


@pytest.mark.parametrize("value", [np.float32(1.5), np.float64(2.25), Decimal("7.5")], ids=repr)
def test_a_fractional_integer_field_is_refused_whatever_its_number_type(value: object) -> None:
    with pytest.raises(InvalidInputError) as caught:
        VideoRequest(image=IMAGE, seed=value)
    assert caught.value.field == "seed"


def test_whole_numbers_of_any_number_type_are_accepted() -> None:
    request = VideoRequest(image=IMAGE, seed=np.int64(9), motion_bucket_id=np.float32(40.0), frames=Decimal(3))
    assert (request.seed, request.motion_bucket_id, request.frames) == (9, 40, 3)
    assert all(type(v) is int for v in (request.seed, request.motion_bucket_id, request.frames))


def test_fields_left_unset_are_left_to_the_model() -> None:
    """Only the seed has a value of its own (0: random); the rest are the model's defaults, so an engine can
    tell a field the user set (and refuse it where the model lacks it) from one left alone."""
    request = VideoRequest(image=IMAGE)
    assert (request.seed, request.cfg_scale, request.motion_bucket_id, request.prompt) == (0, None, None, None)
    assert request.engine_options() == {} and request.options() == {}
    assert request.fit is FitMode.CROP


def test_values_are_normalised_to_their_types() -> None:
    request = VideoRequest(image=IMAGE, seed="42", cfg_scale=3, motion_bucket_id=200.0, frames=14, fit="pad")
    assert request.seed == 42 and isinstance(request.seed, int)
    assert request.cfg_scale == 3.0 and isinstance(request.cfg_scale, float)
    assert request.motion_bucket_id == 200 and isinstance(request.motion_bucket_id, int)
    assert request.fit is FitMode.PAD
    assert request.engine_options() == {"frames": 14}


def test_bad_fit_mode_lists_the_modes() -> None:
    with pytest.raises(InvalidInputError, match="strict, crop, pad, stretch") as caught:
        VideoRequest(image=IMAGE, fit="zoom")
    assert caught.value.field == "fit"


def test_with_options_validates_again() -> None:
    request = VideoRequest(image=IMAGE)
    assert request.with_options(seed=7).seed == 7
    with pytest.raises(InvalidInputError):
        request.with_options(motion_bucket_id=999)


def test_repr_is_short_and_shows_the_size() -> None:
    text = repr(VideoRequest(image=IMAGE, seed=5))
    assert "64x48" in text and "seed=5" in text and len(text) < 200


# ------------------------------------------------------------------ image inputs


def test_every_image_input_form_gives_the_same_pixels(tmp_path: Path) -> None:
    data = png_bytes(40, 30, seed=3)
    path = tmp_path / "in.png"
    path.write_bytes(data)
    expected = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    torch = pytest.importorskip("torch")
    forms = [
        data,
        path,
        str(path),
        Image.open(io.BytesIO(data)),
        expected.copy(),
        expected.astype(np.float32) / 255.0,
        torch.from_numpy(expected.astype(np.float32) / 255.0)[None],  # ComfyUI IMAGE, batch of one
    ]
    for form in forms:
        image = VideoRequest(image=form).image
        assert image.dtype == np.uint8 and image.shape == (30, 40, 3) and image.flags.c_contiguous
        np.testing.assert_array_equal(image, expected)


def test_alpha_is_composited_on_white_and_grey_becomes_rgb() -> None:
    rgba = np.zeros((4, 4, 4), dtype=np.uint8)  # fully transparent black
    assert VideoRequest(image=rgba).image.min() == 255
    grey = np.full((4, 4), 77, dtype=np.uint8)
    assert VideoRequest(image=grey).image.shape == (4, 4, 3)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (b"", "empty"),
        (b"definitely not an image", "not an image format"),
        (png_bytes(20, 20)[:60], "truncated or corrupt"),
        (Path("/nonexistent/photo.png"), "no such file"),
        (np.zeros((2, 8, 8, 3), dtype=np.float32), "batch of 2"),
        (np.zeros((8, 8, 5), dtype=np.uint8), "1, 3 or 4 channels"),
        (12345, "unsupported type int"),
        (np.full((4, 4, 3), 200.0, dtype=np.float32), "float images must be in 0..1"),
        (np.full((4, 4, 3), 40000, dtype=np.uint16), "integer images must be in 0..255"),
        (np.full((4, 4, 3), -3, dtype=np.int16), "integer images must be in 0..255"),
        (None, "required"),
    ],
)
def test_unreadable_images_get_a_clear_error(value: object, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message) as caught:
        VideoRequest(image=value)
    assert caught.value.field == "image"


def test_decompression_bomb_is_refused_from_the_header() -> None:
    from img2vid.images import open_image_bytes

    buffer = io.BytesIO()
    Image.new("1", (20000, 20000)).save(buffer, format="PNG")  # tiny file, 400 Mpx canvas
    with pytest.raises(InvalidInputError, match="pixels"):
        open_image_bytes(buffer.getvalue(), max_pixels=10_000_000)


def test_a_small_float_overshoot_is_clipped_not_refused() -> None:
    # Some ComfyUI nodes leave values a hair outside 0..1; those are ordinary images.
    image = np.full((2, 2, 3), 1.02, dtype=np.float32)
    image[0, 0] = -0.01
    pixels = VideoRequest(image=image).image
    assert pixels[1, 1].tolist() == [255, 255, 255] and pixels[0, 0].tolist() == [0, 0, 0]
