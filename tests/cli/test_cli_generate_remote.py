"""``img2vid generate`` through the remote engine, against the scripted protocol server.

What a shell user relies on: the files written and their names, the exit code for each failure, an error
that is one or two plain lines (a traceback only with ``--debug``), the key never printed, and Ctrl-C
cancelling the job on the server. In-process runs use virtual time (tests/support/clock.py).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import img2vid
from img2vid import Video
from img2vid.cli import app
from img2vid.cli.generate import output_paths
from support.clock import use_fake_clock
from support.fake_protocol import JOB_ID, FakeProtocolServer, accepted, error, tiny_mp4, video_json, video_raw

KEY = "sk-cli-test-0a1b2c3d4e5f60718293"


@pytest.fixture
def image(tmp_path: Path) -> Path:
    path = tmp_path / "photo.png"
    y, x = np.mgrid[0:36, 0:64]
    Image.fromarray(np.stack([x * 4, y * 7, x * 0 + 90], axis=-1).astype(np.uint8)).save(path)
    return path


@pytest.fixture
def cli(fake_protocol_server: FakeProtocolServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """Runs ``img2vid ARGS`` in-process with the fake server as the configured server and KEY as the key."""
    use_fake_clock(monkeypatch, fake_protocol_server)
    monkeypatch.setenv("IMG2VID_BASE_URL", fake_protocol_server.url)
    monkeypatch.setenv("IMG2VID_API_KEY", KEY)
    monkeypatch.chdir(tmp_path)

    def run(*args: str):
        return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)

    return run


def _error_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


def test_one_image_makes_one_video_and_prints_its_path(
    cli, fake_protocol_server: FakeProtocolServer, image: Path, tmp_path: Path
) -> None:
    fake_protocol_server.poll(accepted(retry_after=0), video_raw(tiny_mp4(), seed=99))
    result = cli("generate", image, "-o", tmp_path / "out" / "clip.mp4", "--seed", "5", "--motion-bucket-id", "200")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(tmp_path / "out" / "clip.mp4")
    video = Video.open(tmp_path / "out" / "clip.mp4")
    assert (video.num_frames, video.fps) == (3, 6.0)
    assert "seed 99" in result.stderr
    assert fake_protocol_server.submits[0].form["motion_bucket_id"] == "200"
    assert KEY not in result.output


def test_several_images_are_numbered_and_each_submitted_once(
    cli, fake_protocol_server: FakeProtocolServer, image: Path, tmp_path: Path
) -> None:
    other = tmp_path / "other.png"
    other.write_bytes(image.read_bytes())
    fake_protocol_server.poll(video_raw(tiny_mp4()), video_json(tiny_mp4()))
    result = cli("generate", image, other, "-o", "clip.gif")
    assert result.exit_code == 0, result.output
    assert result.stdout.split() == ["clip_1.gif", "clip_2.gif"]
    assert Video.open(tmp_path / "clip_2.gif").num_frames == 3
    assert len(fake_protocol_server.submits) == 2


def test_output_names() -> None:
    same = [Path("a/x.png"), Path("b/x.jpg")]
    assert output_paths([Path("a/x.png")], None, "mp4") == [Path("x.mp4")]
    assert output_paths(same, None, "webm") == [Path("x_1.webm"), Path("x_2.webm")]
    assert output_paths(same, Path("out.mp4"), "mp4") == [Path("out_1.mp4"), Path("out_2.mp4")]
    assert output_paths([Path("x.png"), Path("y.png")], "dir/", "png") == [Path("dir/x"), Path("dir/y")]


@pytest.mark.parametrize(
    ("answer", "code", "says"),
    [
        (error(401, "unauthorized", "bad key"), 3, "refused the API key"),
        (error(402, "payment_required", "no credits"), 3, "no credit left"),
        (error(403, "content_moderation", "flagged"), 3, "content moderation"),
        (error(404, "not_found", "Not Found"), 4, "no image-to-video route"),
        (error(413, "payload_too_large", "too big"), 2, "larger than the server accepts"),
        (error(422, "invalid_image", "unusable"), 2, "refused the request"),
        (error(500, "boom", "broken"), 6, "HTTP 500"),
    ],
)
def test_each_submit_error_is_its_own_exit_code_and_two_plain_lines(
    cli, fake_protocol_server: FakeProtocolServer, image: Path, answer, code: int, says: str
) -> None:
    fake_protocol_server.submit(answer, answer, answer)  # 500 is retried; the others never are
    result = cli("generate", image)
    assert result.exit_code == code
    lines = _error_lines(result)
    assert 1 <= len(lines) <= 2 and lines[0].startswith("error: ") and says in lines[0]
    assert "Traceback" not in result.output and KEY not in result.output
    assert result.stdout == ""


def test_a_job_gone_on_poll_exits_4(cli, fake_protocol_server: FakeProtocolServer, image: Path) -> None:
    fake_protocol_server.poll(error(404, "not_found"))
    result = cli("generate", image)
    assert result.exit_code == 4 and "expired" in result.stderr


def test_the_deadline_exits_5(cli, fake_protocol_server: FakeProtocolServer, image: Path) -> None:
    fake_protocol_server.poll_default = accepted()
    result = cli("generate", image, "--timeout", "0.3")
    assert result.exit_code == 5 and "did not finish within the 0.3 s" in result.stderr


def test_an_unreachable_server_exits_6(cli, image: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = cli("generate", image, "--engine", f"http://127.0.0.1:{port}")
    assert result.exit_code == 6 and "could not submit the job" in result.stderr


def test_bad_input_exits_2_naming_the_field(cli, image: Path) -> None:
    result = cli("generate", image, "--cfg-scale", "11")
    assert result.exit_code == 2 and "cfg_scale must be a number from 0.0 to 10.0" in result.stderr
    missing = cli("generate", "nope.png")
    assert missing.exit_code == 2 and "no such file" in missing.stderr
    mismatch = cli("generate", image, "-o", "a.mp4", "--format", "webm")
    assert mismatch.exit_code == 2 and "does not match" in mismatch.stderr
    strict = cli("generate", image, "--fit", "strict")
    assert strict.exit_code == 2 and "1024x576" in strict.stderr


def test_stability_without_a_key_exits_3_naming_every_place(cli, image: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IMG2VID_API_KEY")
    result = cli("generate", image, "--engine", "stability")
    assert result.exit_code == 3
    assert "$IMG2VID_API_KEY" in result.stderr and "$STABILITY_API_KEY" in result.stderr
    assert "config.toml" in result.stderr


def test_debug_shows_the_traceback_and_logs_but_never_the_key(
    cli, fake_protocol_server: FakeProtocolServer, image: Path
) -> None:
    echo = error(500, "boom", f"authorization: Bearer {KEY}", f"key was {KEY}")
    fake_protocol_server.submit(echo, echo, echo)
    result = cli("generate", image, "--debug")
    assert result.exit_code == 6
    assert "Traceback" in result.stderr and "img2vid.remote" in result.stderr and "httpx" in result.stderr
    assert KEY not in result.output and "********" in result.stderr


def test_debug_masks_a_key_in_any_exception_of_the_chain(capsys: pytest.CaptureFixture[str]) -> None:
    from img2vid.cli.exits import report_error
    from img2vid.redact import register_secret

    register_secret(KEY)
    try:
        try:
            raise OSError(f"a library echoed the header: Bearer {KEY}")
        except OSError as cause:
            raise img2vid.errors.ServiceError("the server failed") from cause
    except img2vid.errors.ServiceError as error:
        assert report_error(error, debug=True) == 6
    err = capsys.readouterr().err
    assert "Traceback" in err and "a library echoed the header" in err and KEY not in err


def test_ctrl_c_cancels_the_job_and_exits_130_at_once(
    fake_protocol_server: FakeProtocolServer, image: Path, tmp_path: Path
) -> None:
    fake_protocol_server.poll_default = accepted(retry_after=30)
    env = dict(os.environ)
    env.update(
        IMG2VID_BASE_URL=fake_protocol_server.url,
        IMG2VID_API_KEY=KEY,
        PYTHONPATH=str(Path(img2vid.__file__).resolve().parents[1]),
        PYTHONFAULTHANDLER="1",  # a hang is shown as every thread's stack (SIGABRT below)
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "img2vid", "generate", str(image)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # Ctrl-C as a terminal delivers it: a run started in the background (CI under `cmd &`) passes on
        # an ignored SIGINT, which Python then leaves ignored, so the client would never see it.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        assert fake_protocol_server.wait_for("poll", 1, timeout=30)
        process.send_signal(signal.SIGINT)
        try:
            out, err = process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGABRT)
            _, stacks = process.communicate(timeout=10)
            pytest.fail(f"the client did not exit within 10 s of Ctrl-C; its threads:\n{stacks}")
    finally:
        process.kill()
    assert process.returncode == 130
    # At once: inside the server's 30 s pause, with no second poll; and the job was cancelled on the server.
    assert len(fake_protocol_server.polls) == 1
    assert [(c.method, c.path) for c in fake_protocol_server.cancels] == [
        ("DELETE", f"/v2beta/image-to-video/result/{JOB_ID}")
    ]
    assert fake_protocol_server.cancels[0].headers["authorization"] == f"Bearer {KEY}"
    assert err.strip().splitlines()[-1] == "cancelled" and "Traceback" not in err
    assert KEY not in out + err
