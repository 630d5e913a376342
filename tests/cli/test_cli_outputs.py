"""Output naming and format rules of ``img2vid generate`` that need no engine: refused before any work."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from img2vid.cli import app


def test_an_output_suffix_img2vid_does_not_write_is_refused(tmp_path: Path) -> None:
    image = tmp_path / "in.png"
    image.write_bytes(b"not read: the output is checked first")
    result = CliRunner().invoke(app, ["generate", str(image), "-o", str(tmp_path / "clip.mov")])
    assert result.exit_code == 2
    assert ".mov" in result.output and ".mp4" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "clip.mov").exists()
