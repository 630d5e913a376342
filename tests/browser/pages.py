"""What every playground test does with a page: open one in a fresh browser context (collecting the page's
own script errors), open the playground and wait until it can be used, and read the job id from the URL."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from playwright.sync_api import Page, expect
from server_process import Server

V2BETA = "/v2beta/image-to-video"
JOB_URL = re.compile(r"#job=([0-9a-f]{64})(?:&|$)")


@contextmanager
def new_page(browser: Any) -> Iterator[Page]:
    """A page in a context of its own (desktop size, downloads on); ``page.errors`` collects the script
    errors the page raised, which a test asserts are none."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    page = context.new_page()
    page.errors = []  # type: ignore[attr-defined]
    page.on("pageerror", lambda error: page.errors.append(str(error)))  # type: ignore[attr-defined]
    try:
        yield page
    finally:
        context.close()


def open_playground(page: Page, server: Server, fragment: str = "") -> None:
    page.goto(server.url + "/" + fragment)
    expect(page.get_by_role("button", name="Generate")).to_be_enabled()


def job_id_in_url(page: Page) -> str:
    """The job id the page put in its URL once it submitted."""
    expect(page).to_have_url(JOB_URL)
    match = JOB_URL.search(page.url)
    assert match is not None
    return match.group(1)
