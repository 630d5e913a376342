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


#: Raised by a client about its own connection or clock; a server never answers with them.
_CLIENT_SIDE = (errors.ConnectionFailedError, errors.DeadlineExceededError)


def _answerable_errors() -> list[type[errors.Img2VidError]]:
    """Every error a server can answer over HTTP (CancelledError answers as 410, see its docstring)."""
    classes = [obj for _, obj in inspect.getmembers(errors, inspect.isclass) if issubclass(obj, errors.Img2VidError)]
    return [cls for cls in classes if cls not in (errors.Img2VidError, *_CLIENT_SIDE)]


@pytest.mark.parametrize("cls", _answerable_errors(), ids=lambda cls: cls.__name__)
def test_what_the_server_answers_for_an_error_the_client_reads_back_as_that_error(cls: type) -> None:
    """The server answers an error with its status and protocol name; a client (RemoteEngine, the nodes)
    maps that pair back through the same table, so a user of either side sees the same kind of error."""
    status = errors.CANCELLED_HTTP_STATUS if cls is errors.CancelledError else cls.http_status
    read_back = errors.error_for_status(status, cls.error_name)
    assert read_back is cls, f"{cls.__name__} answered as {status} {cls.error_name!r} reads back as {read_back.__name__}"


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
