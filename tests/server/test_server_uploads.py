"""Everything refused before a job exists: size (413), type, pixel count (a decompression bomb within a
second and without a memory spike), the protocol's sizes, the form's shape and every field's range.
Each refusal is the protocol's error body naming the field; no refusal leaves a job behind."""

from __future__ import annotations

import io
import resource
import struct
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from img2vid.server import ServerSettings, create_app
from img2vid.server.keys import create_key
from support.fake_engine import FakeEngine
from support.images import gradient, png_bytes
from support.server_harness import V2ALPHA, V2BETA, auth, submit, wait_result


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[TestClient, str]]:
    app = create_app(ServerSettings(data=tmp_path, rate_limit=0), engine=FakeEngine())
    with TestClient(app) as client:
        key, _ = create_key(app.state.img2vid.store, "t")
        yield client, key
        assert sum(app.state.img2vid.store.counts().values()) == getattr(client, "accepted", 0)


def _refused(answer, status: int, field: str, *words: str) -> dict:
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert set(body) == {"id", "name", "errors"}
    text = " ".join(body["errors"])
    assert field in text, text
    for word in words:
        assert word in text, text
    return body


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def decompression_bomb(side: int = 40_000) -> bytes:
    """A real PNG bomb: a 1-bit side×side image of zeros, a few hundred KB that decode to 1.6 GB in Pillow."""
    row = b"\x00" * (1 + side // 8)
    compressor = zlib.compressobj(9)
    rows_per_chunk = 1024
    parts = [compressor.compress(row * rows_per_chunk) for _ in range(side // rows_per_chunk)]
    parts.append(compressor.compress(row * (side % rows_per_chunk)))
    parts.append(compressor.flush())
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", b"".join(parts)) + _png_chunk(b"IEND", b"")


def _encoded(fmt: str, width: int = 1024, height: int = 576) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(gradient(width, height)).save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.mark.parametrize("route", [V2BETA, V2ALPHA])
def test_an_11_mib_upload_is_413(server, route: str) -> None:
    client, key = server
    image = png_bytes(1024, 576) + b"\x00" * (11 * 1024 * 1024)
    _refused(submit(client, key, route=route, image=image), 413, "image", "10 MiB")


def test_a_decompression_bomb_is_400_within_a_second_without_a_memory_spike(server) -> None:
    client, key = server
    bomb = decompression_bomb()
    assert len(bomb) < 1024 * 1024
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.monotonic()
    answer = submit(client, key, image=bomb)
    elapsed = time.monotonic() - started
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    _refused(answer, 400, "image", "pixels")
    assert elapsed < 1.0
    assert grown_mb < 100, f"peak memory grew by {grown_mb:.0f} MB"


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP"])
def test_jpeg_and_webp_are_accepted(server, fmt: str) -> None:
    client, key = server
    answer = submit(client, key, image=_encoded(fmt))
    assert answer.status_code == 200, answer.text
    client.accepted = getattr(client, "accepted", 0) + 1
    assert wait_result(client, key, answer.json()["id"]).status_code == 200


@pytest.mark.parametrize("fmt", ["GIF", "BMP", "TIFF"])
def test_other_image_types_are_refused(server, fmt: str) -> None:
    client, key = server
    _refused(submit(client, key, image=_encoded(fmt)), 400, "image", "PNG, JPEG or WebP")


@pytest.mark.parametrize(
    "image",
    [b"", b"not an image at all", png_bytes(1024, 576)[:200], b"\x89PNG\r\n\x1a\n" + b"\x00" * 64],
    ids=["empty", "text", "truncated", "png-magic-garbage"],
)
def test_unreadable_images_are_400(server, image: bytes) -> None:
    client, key = server
    _refused(submit(client, key, image=image), 400, "image")


@pytest.mark.parametrize("size", [(800, 600), (1024, 577), (64, 64), (2048, 1152)])
def test_sizes_other_than_the_protocols_are_refused_by_default(server, size: tuple[int, int]) -> None:
    client, key = server
    _refused(submit(client, key, image=png_bytes(*size)), 400, "image", "1024x576, 576x1024 or 768x768")


def test_other_sizes_are_accepted_when_the_operator_enables_them(tmp_path: Path) -> None:
    app = create_app(ServerSettings(data=tmp_path, any_size=True, max_pixels=1024 * 1024), engine=FakeEngine())
    with TestClient(app) as client:
        key, _ = create_key(app.state.img2vid.store, "t")
        answer = submit(client, key, image=png_bytes(640, 384))
        assert answer.status_code == 200
        assert wait_result(client, key, answer.json()["id"]).status_code == 200
        _refused(submit(client, key, image=png_bytes(1100, 1000)), 400, "image", "pixels")


@pytest.mark.parametrize(
    "field,value,allowed",
    [
        ("seed", "-1", "0 to 4294967294"),
        ("seed", "4294967295", "0 to 4294967294"),
        ("seed", "1.5", "0 to 4294967294"),
        ("seed", "abc", "0 to 4294967294"),
        ("cfg_scale", "10.5", "0.0 to 10.0"),
        ("cfg_scale", "-0.1", "0.0 to 10.0"),
        ("cfg_scale", "nan", "0.0 to 10.0"),
        ("cfg_scale", "inf", "0.0 to 10.0"),
        ("motion_bucket_id", "0", "1 to 255"),
        ("motion_bucket_id", "256", "1 to 255"),
        ("motion_bucket_id", "12.5", "1 to 255"),
        ("frames", "0", "1 to 257"),
        ("steps", "201", "1 to 200"),
        ("fps", "61", "1 to 60"),
        ("noise_aug_strength", "1.5", "0.0 to 1.0"),
        ("min_guidance_scale", "11", "0.0 to 10.0"),
        ("decode_chunk_size", "0", "1 to 128"),
    ],
)
def test_every_field_is_range_checked_and_named(server, field: str, value: str, allowed: str) -> None:
    client, key = server
    body = _refused(submit(client, key, **{field: value}), 400, field, allowed)
    assert body["name"] == "invalid_parameters"


ALL_FIELDS = ["seed", "cfg_scale", "motion_bucket_id", "frames", "steps", "fps", "noise_aug_strength",
              "min_guidance_scale", "decode_chunk_size"]
INTEGER_FIELDS = ["seed", "motion_bucket_id", "frames", "steps", "fps", "decode_chunk_size"]
NUMBER_FIELDS = ["cfg_scale", "noise_aug_strength", "min_guidance_scale"]


@pytest.mark.parametrize("field", INTEGER_FIELDS)
@pytest.mark.parametrize(
    "value",
    ["1_0", "+5", "\u0663", "\uff11\uff12", " 5", "5 ", "\t5", "5\n", "0x10", "1e1", "5.0", "--5", "\u00b2"],
    ids=["underscore", "plus", "arabic-indic-3", "fullwidth-12", "lead-space", "trail-space", "tab", "newline",
         "hex", "exponent", "point-zero", "double-minus", "superscript-2"],
)
def test_integer_fields_are_the_protocols_integers(server, field: str, value: str) -> None:
    """``int()`` reads all of these (as 10, 5, 3, 12, 5...); the protocol's integer is ASCII digits only."""
    client, key = server
    body = _refused(submit(client, key, **{field: value}), 400, field, "ASCII digits")
    assert body["name"] == "invalid_parameters"


@pytest.mark.parametrize("field", NUMBER_FIELDS)
@pytest.mark.parametrize(
    "value",
    ["nan", "NaN", "inf", "-inf", "Infinity", "1_0", "+0.5", "\u0663", " 0.5", "0.5 ", "0x1", "0x1p-1", "1e", ".", "-", "0.5.1"],
)
def test_number_fields_are_plain_decimal_numbers(server, field: str, value: str) -> None:
    client, key = server
    body = _refused(submit(client, key, **{field: value}), 400, field, "plain decimal notation")
    assert body["name"] == "invalid_parameters"


@pytest.mark.parametrize(
    "field,value,expected",
    [
        ("seed", "1000", 1000),
        ("seed", "007", 7),
        ("motion_bucket_id", "200", 200),
        ("cfg_scale", "2", 2.0),
        ("cfg_scale", "2.5", 2.5),
        ("cfg_scale", ".5", 0.5),
        ("cfg_scale", "3.", 3.0),
        ("cfg_scale", "1e-05", 1e-05),
        ("cfg_scale", "2.5E+0", 2.5),
        ("cfg_scale", "-0", 0.0),
        ("noise_aug_strength", "0.02", 0.02),
    ],
)
def test_plain_numbers_are_read_as_written(tmp_path: Path, field: str, value: str, expected: float) -> None:
    seen = []
    app = create_app(ServerSettings(data=tmp_path, rate_limit=0), engine=FakeEngine(fail_with=lambda r: seen.append(r)))
    with TestClient(app) as client:
        key, _ = create_key(app.state.img2vid.store, "t")
        answer = submit(client, key, **{field: value})
        assert answer.status_code == 200, answer.text
        assert wait_result(client, key, answer.json()["id"]).status_code == 200
    assert getattr(seen[0], field) == expected


def test_an_empty_field_means_its_default_for_every_field(tmp_path: Path) -> None:
    """The same request with every field sent empty, and with no fields at all, reaches the engine alike."""
    seen = []
    app = create_app(ServerSettings(data=tmp_path, rate_limit=0), engine=FakeEngine(fail_with=lambda r: seen.append(r)))
    with TestClient(app) as client:
        key, _ = create_key(app.state.img2vid.store, "t")
        for route in (V2BETA, V2ALPHA):
            for fields in ({name: "" for name in ALL_FIELDS}, {}):
                answer = submit(client, key, route=route, **fields)
                assert answer.status_code == 200, answer.text
                assert wait_result(client, key, answer.json()["id"], route=route).status_code == 200
    empty_beta, absent_beta, empty_alpha, absent_alpha = seen
    assert (empty_beta.cfg_scale, empty_beta.motion_bucket_id) == (1.8, 127)
    assert (empty_alpha.cfg_scale, empty_alpha.motion_bucket_id) == (2.5, 40)
    for empty, absent in ((empty_beta, absent_beta), (empty_alpha, absent_alpha)):
        assert empty.engine_options() == absent.engine_options() == {}
        assert empty.seed != 0 and absent.seed != 0  # a random seed was chosen for both
        assert (empty.cfg_scale, empty.motion_bucket_id) == (absent.cfg_scale, absent.motion_bucket_id)


@pytest.mark.parametrize(
    "field,setting,cap",
    [("frames", "max_frames", 6), ("steps", "max_steps", 7), ("decode_chunk_size", "max_decode_chunk", 3)],
)
def test_a_request_over_a_cost_cap_is_400_naming_the_field_and_the_cap(tmp_path: Path, field: str, setting: str, cap: int) -> None:
    app = create_app(ServerSettings(data=tmp_path, rate_limit=0, **{setting: cap}), engine=FakeEngine())
    with TestClient(app) as client:
        key, _ = create_key(app.state.img2vid.store, "t")
        body = _refused(submit(client, key, **{field: cap + 1}), 400, field, f"at most {cap}", f"IMG2VID_{setting.upper()}")
        assert body["name"] == "invalid_parameters"
        assert sum(app.state.img2vid.store.counts().values()) == 0
        at_cap = submit(client, key, **{field: cap})
        assert at_cap.status_code == 200, at_cap.text


@pytest.mark.parametrize("field,default_cap", [("frames", 50), ("steps", 100), ("decode_chunk_size", 25)])
def test_the_default_cost_caps(server, field: str, default_cap: int) -> None:
    client, key = server
    _refused(submit(client, key, **{field: default_cap + 1}), 400, field, f"at most {default_cap}")


def test_engine_fields_in_range_reach_the_engine(tmp_path: Path) -> None:
    seen = []

    def record(request):
        seen.append(request.engine_options())
        return None

    app = create_app(ServerSettings(data=tmp_path), engine=FakeEngine(fail_with=record))
    with TestClient(app) as client:
        key, _ = create_key(app.state.img2vid.store, "t")
        job = submit(client, key, frames=2, steps=3, fps=8, noise_aug_strength=0.1, min_guidance_scale=1.5, decode_chunk_size=2)
        assert wait_result(client, key, job.json()["id"]).status_code == 200
    assert seen == [{"frames": 2, "steps": 3, "fps": 8, "noise_aug_strength": 0.1, "min_guidance_scale": 1.5, "decode_chunk_size": 2}]


def test_form_shape_errors_name_the_problem(server) -> None:
    client, key = server
    image = png_bytes(1024, 576)
    _refused(client.post(V2BETA, headers=auth(key), data={"seed": "1"}, files={"x": ("x", b"1")}), 400, "image", "required")
    _refused(client.post(V2BETA, headers=auth(key), files={"image": (None, b"abc")}), 400, "image", "file part")
    _refused(client.post(V2BETA, headers={**auth(key), "content-type": "application/json"}, content=b"{}"), 400, "multipart/form-data")
    _refused(
        client.post(V2BETA, headers=auth(key), files=[("image", ("a.png", image)), ("image", ("b.png", image))]),
        400,
        "image",
        "exactly one",
    )
    _refused(
        client.post(V2BETA, headers={**auth(key), "content-type": "multipart/form-data; boundary=xyz"}, content=b"--xyz\r\ngarbage"),
        400,
        "image",
    )


def test_client_headers_longer_than_256_characters_are_refused(server) -> None:
    client, key = server
    answer = client.post(
        V2BETA,
        headers={**auth(key), "stability-client-id": "x" * 257},
        files={"image": ("i.png", png_bytes(1024, 576), "image/png")},
    )
    _refused(answer, 400, "stability-client-id", "256")


def test_a_chunked_upload_is_cut_off_at_the_limit(server) -> None:
    """Without a content-length the body is counted as it arrives and refused once past 10 MiB."""
    client, key = server
    def body():
        yield b"--b\r\nContent-Disposition: form-data; name=\"image\"; filename=\"i.png\"\r\n\r\n"
        for _ in range(12):
            yield b"\x00" * (1024 * 1024)
        yield b"\r\n--b--\r\n"

    answer = client.post(
        V2BETA, headers={**auth(key), "content-type": "multipart/form-data; boundary=b"}, content=body()
    )
    _refused(answer, 413, "image", "10 MiB")
