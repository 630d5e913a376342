"""CI's rule on skips, as a pytest plugin: with ``IMG2VID_REQUIRE_SERVICES=1``, a test marked ``services`` or
``live`` that skips is reported as a failure that gives the skip's reason.

Such tests skip where Redis, PostgreSQL, a driver, Chromium or a tool is missing, which is right on a
developer's machine and wrong in CI: there a skip would pass a run that tested nothing of the scale-out
path. ``.ci/run`` sets the variable; ``tests/conftest.py`` imports the hook, and ``-p
support.require_services`` loads it anywhere else. Tests marked ``gpu`` may still skip (CI has no GPU), and
an expected failure (``xfail``) is left alone.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

__all__ = ["REQUIRE_SERVICES", "must_run", "pytest_runtest_makereport"]

#: Set (to 1) where every test that needs services or starts processes must run: CI sets it.
REQUIRE_SERVICES = "IMG2VID_REQUIRE_SERVICES"


def must_run(item: pytest.Item) -> bool:
    """Whether ``item`` may not skip: with ``IMG2VID_REQUIRE_SERVICES=1``, every test marked ``services`` or
    ``live``, unless it is also marked ``gpu``."""
    if os.environ.get(REQUIRE_SERVICES) != "1" or item.get_closest_marker("gpu") is not None:
        return False
    return item.get_closest_marker("services") is not None or item.get_closest_marker("live") is not None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Turn the skip of a test that must run into a failure, in whichever phase it skipped."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.skipped and not hasattr(report, "wasxfail") and must_run(item):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = (
            f"skipped ({reason}), but with {REQUIRE_SERVICES}=1 every test marked services or live must run: "
            "install what it needs (redis-server, postgresql, chromium, the dev extra)"
        )
