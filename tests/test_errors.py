"""The error tree: one class per protocol status, every class drawn in the module docstring."""

from __future__ import annotations

import inspect

import pytest

from img2vid import errors


@pytest.mark.parametrize(
    ("status", "name", "expected"),
    [
        (400, None, errors.InvalidInputError),
        (401, None, errors.AuthenticationError),
        (402, None, errors.InsufficientCreditsError),
        (403, None, errors.PermissionDeniedError),
        (403, "content_moderation", errors.ContentModerationError),
        (404, None, errors.NotFoundError),
        (413, None, errors.PayloadTooLargeError),
        (422, None, errors.UnprocessableError),
        (429, None, errors.RateLimitedError),
        (500, None, errors.ServiceError),
        (503, None, errors.ServiceError),
    ],
)
def test_status_maps_to_its_class_and_back(status: int, name: str | None, expected: type) -> None:
    cls = errors.error_for_status(status, name)
    assert cls is expected
    if status < 500:
        assert cls.http_status == status


def test_every_public_error_is_drawn_in_the_tree_and_derives_from_the_base() -> None:
    classes = [obj for _, obj in inspect.getmembers(errors, inspect.isclass) if issubclass(obj, Exception)]
    assert len(classes) >= 15
    for cls in classes:
        assert issubclass(cls, errors.Img2VidError)
        assert cls.__name__ in errors.__doc__, cls.__name__
        assert cls.__doc__, cls.__name__


def test_field_errors_carry_field_value_and_allowed() -> None:
    error = errors.InvalidInputError.for_field("cfg_scale", 12, "a number from 0 to 10")
    assert (error.field, error.value, error.allowed) == ("cfg_scale", 12, "a number from 0 to 10")
    assert str(error) == "cfg_scale must be a number from 0 to 10; got 12"
