"""Fuzzing the protocol routes with hypothesis: whatever a client sends, the answer is never a 500 and
is always either a success or the protocol's error body."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from img2vid.server import ServerSettings, create_app
from img2vid.server.keys import create_key
from support.fake_engine import FakeEngine
from support.images import png_bytes
from support.server_harness import V2ALPHA, V2BETA

FIELDS = ["seed", "cfg_scale", "motion_bucket_id", "frames", "steps", "fps", "noise_aug_strength",
          "min_guidance_scale", "decode_chunk_size", "unknown_field"]
VALID_PNG = png_bytes(1024, 576)

text_values = st.one_of(
    st.text(max_size=30),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["", " 1 ", "1e309", "-0", "0x10", "１２", "\x00", "true", "127.0"]),
)
images = st.one_of(
    st.just(VALID_PNG),
    st.binary(max_size=2048),
    st.binary(max_size=512).map(lambda tail: VALID_PNG[:64] + tail),
    st.binary(max_size=256).map(lambda tail: b"\x89PNG\r\n\x1a\n" + tail),
    st.binary(max_size=256).map(lambda tail: b"RIFF\x00\x00\x00\x00WEBP" + tail),
    st.binary(max_size=256).map(lambda tail: b"\xff\xd8\xff" + tail),
)
header_values = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=300)


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[TestClient, str]]:
    with tempfile.TemporaryDirectory() as folder:
        app = create_app(ServerSettings(data=Path(folder), rate_limit=0), engine=FakeEngine())
        with TestClient(app, raise_server_exceptions=False) as client:
            key, _ = create_key(app.state.img2vid.store, "fuzz")
            yield client, key


def _check(answer) -> None:
    assert answer.status_code < 500, answer.text
    if answer.status_code >= 400:
        assert set(answer.json()) == {"id", "name", "errors"}


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    route=st.sampled_from([V2BETA, V2ALPHA]),
    fields=st.dictionaries(st.sampled_from(FIELDS), text_values, max_size=5),
    image=images,
    filename=st.one_of(st.none(), st.text(max_size=20)),
    client_id=st.one_of(st.none(), header_values),
)
def test_submit_never_answers_500(server, route, fields, image, filename, client_id) -> None:
    client, key = server
    headers = {"authorization": f"Bearer {key}"}
    if client_id is not None:
        headers["stability-client-id"] = client_id
    files = {"image": (filename, image, "application/octet-stream")} if filename is not None else {"image": ("i", image)}
    _check(client.post(route, headers=headers, data=fields, files=files))


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    route=st.sampled_from([V2BETA, V2ALPHA]),
    job_id=st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126, exclude_characters="/?#%"), min_size=1, max_size=80),
    accept=st.one_of(st.none(), header_values, st.sampled_from(["video/*", "video/mp4", "application/json", "*/*"])),
    authorization=st.one_of(st.none(), header_values),
)
def test_result_never_answers_500(server, route, job_id, accept, authorization) -> None:
    client, key = server
    headers = {"authorization": authorization if authorization is not None else key}
    if accept is not None:
        headers["accept"] = accept
    _check(client.get(f"{route}/result/{job_id}", headers=headers))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.binary(max_size=1024), content_type=st.one_of(st.none(), header_values, st.just("multipart/form-data; boundary=b")))
def test_raw_bodies_never_answer_500(server, body, content_type) -> None:
    client, key = server
    headers = {"authorization": key}
    if content_type is not None:
        headers["content-type"] = content_type
    _check(client.post(V2BETA, headers=headers, content=body))
