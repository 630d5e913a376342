"""One rule masks a URL's credentials wherever img2vid shows text: every form of password a broker or store URL
can carry, in an error's text, and in every log record of a process img2vid owns, whichever library logs it
(Celery, kombu, uvicorn, SQLAlchemy), its traceback included."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from img2vid.config import mask_url_password
from img2vid.jobs.celery_app import masked
from img2vid.redact import MASK, install_process_redaction, mask_url_credentials, redact

SECRET = "Sup3rSecretPw"

#: Every form of credential a broker or store URL takes, and what must still show once it is masked.
URLS = [
    (f"redis://:{SECRET}@127.0.0.1:6379/0", "redis://:********@127.0.0.1:6379/0"),
    (f"redis://user:{SECRET}@127.0.0.1:6379/0", "redis://user:********@127.0.0.1:6379/0"),
    (f"rediss://:{SECRET}@cache.example:6380/1?ssl_cert_reqs=required", "rediss://:********@cache.example:6380/1?ssl_cert_reqs=required"),
    (f"amqp://user:{SECRET}@rabbit:5672//", "amqp://user:********@rabbit:5672//"),
    (f"postgresql+psycopg://img2vid:{SECRET}@db/img2vid", "postgresql+psycopg://img2vid:********@db/img2vid"),
    (f"postgresql+psycopg://:{SECRET}@db/img2vid", "postgresql+psycopg://:********@db/img2vid"),
    (f"redis://127.0.0.1:6379/0?password={SECRET}", "redis://127.0.0.1:6379/0?password=********"),
    (f"redis://127.0.0.1/0?db=1&password={SECRET}&x=1", "redis://127.0.0.1/0?db=1&password=********&x=1"),
    (f"postgresql+psycopg://u@db/x?sslpassword={SECRET}", "postgresql+psycopg://u@db/x?sslpassword=********"),
    (f"redis://:p@{SECRET}@127.0.0.1:6379/0", "redis://:********@127.0.0.1:6379/0"),  # an unescaped @ in it
]
URL_IDS = [shown.split("://", 1)[0] + "-" + str(index) for index, (_url, shown) in enumerate(URLS)]


@pytest.mark.parametrize(("url", "shown"), URLS, ids=URL_IDS)
def test_every_form_of_url_credential_is_masked_by_the_one_rule(url: str, shown: str) -> None:
    for mask in (redact, mask_url_credentials, mask_url_password, masked):
        assert mask(f"cannot reach {url} now") == f"cannot reach {shown} now"


def test_passwords_outside_urls_are_masked_and_prose_is_left_alone() -> None:
    assert redact(f"host=db password={SECRET} dbname=x") == "host=db password=******** dbname=x"
    assert redact(str({"password": SECRET, "host": "db"})) == "{'password': '********', 'host': 'db'}"
    for prose in ("the password: is wrong", "tests pass: 3", "redis://user@host:6379/0", "http://host:8000/x"):
        assert redact(prose) == prose


@pytest.fixture
def records() -> Iterator[list[logging.LogRecord]]:
    """Records as a handler on the root logger receives them, after :func:`install_process_redaction`."""
    install_process_redaction()
    caught: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            caught.append(record)

    handler = Keep(level=logging.DEBUG)
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield caught
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


@pytest.mark.parametrize(("url", "shown"), URLS, ids=URL_IDS)
@pytest.mark.parametrize("logger", ["celery.worker.consumer.consumer", "kombu.connection", "uvicorn.error", "sqlalchemy.engine", "img2vid.jobs"])
def test_every_library_log_line_and_traceback_is_masked(
    records: list[logging.LogRecord], logger: str, url: str, shown: str
) -> None:
    log = logging.getLogger(logger)
    log.error("consumer: Cannot connect to %s: refused", url)
    log.warning(f"broker at {url} went away")
    try:
        raise ConnectionError(f"could not connect to {url}")
    except ConnectionError:
        log.exception("publish failed")
    texts = [logging.Formatter().format(record) for record in records]
    assert len(texts) == 3
    assert all(SECRET not in text for text in texts), texts
    assert shown in texts[0] and shown in texts[1] and shown in texts[2] and "Traceback" in texts[2]


def test_a_record_with_nothing_to_mask_keeps_its_arguments(records: list[logging.LogRecord]) -> None:
    # uvicorn's access formatter unpacks record.args as a tuple: a clean record must keep it.
    logging.getLogger("uvicorn.access").info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5", "GET", "/healthz", "1.1", 200)
    logging.getLogger("uvicorn.access").info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5", "GET", f"/x?password={SECRET}", "1.1", 200)
    clean, dirty = records
    assert clean.args == ("127.0.0.1:5", "GET", "/healthz", "1.1", 200)
    assert dirty.args == ("127.0.0.1:5", "GET", f"/x?password={MASK}", "1.1", 200)
    assert SECRET not in dirty.getMessage()
