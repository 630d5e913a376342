"""Video: round trips through every format, decoding of other encoders' MP4s, ComfyUI conversions."""

from __future__ import annotations

import io
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from img2vid import Video
from img2vid.errors import InvalidInputError


def moving_frames(count: int = 6, width: int = 96, height: int = 64) -> np.ndarray:
    """Smooth frames with a moving edge: compress well, so lossy round trips stay close."""
    y, x = np.mgrid[0:height, 0:width]
    frames = np.empty((count, height, width, 3), dtype=np.uint8)
    for t in range(count):
        frames[t, ..., 0] = (x * 255 // max(1, width - 1)).astype(np.uint8)
        frames[t, ..., 1] = (y * 255 // max(1, height - 1)).astype(np.uint8)
        frames[t, ..., 2] = np.where(x < 8 + t * 6, 220, 30)
    return frames


def encode_with(frames: np.ndarray, fps: Fraction, *, container: str = "mp4", codec: str = "libx264",
                pix_fmt: str = "yuv420p", options: dict[str, str] | None = None, **stream_attrs) -> bytes:
    """An MP4 from some other encoder's settings, written with PyAV directly (not img2vid's encoder)."""
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format=container) as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], pix_fmt
        stream.options = options or {}
        for name, value in stream_attrs.items():
            setattr(stream.codec_context, name, value)
        for array in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")))
        out.mux(stream.encode(None))
    return buffer.getvalue()


def mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


@pytest.mark.parametrize(("fmt", "keeps_fps", "tolerance"), [
    ("mp4", True, 4.0), ("webm", True, 6.0), ("webp", True, 4.0), ("gif", False, 12.0),
])
def test_round_trip_keeps_count_size_and_rate(fmt: str, keeps_fps: bool, tolerance: float) -> None:
    frames = moving_frames()
    video = Video(frames, fps=8, seed=11)
    data = video.to_bytes(fmt)
    back = Video.from_bytes(data)
    assert back.num_frames == video.num_frames
    assert (back.width, back.height) == (video.width, video.height)
    if keeps_fps:
        assert back.fps == pytest.approx(8, rel=0.01)
    else:  # GIF stores durations in hundredths of a second: 1/8 s = 12.5 cs rounds to 13 cs
        assert back.fps == pytest.approx(8, rel=0.05)
    assert mean_abs_diff(back.frames, frames) < tolerance


def test_png_folder_round_trip_is_lossless(tmp_path: Path) -> None:
    video = Video(moving_frames(), fps=12.5)
    folder = video.save(tmp_path / "frames", "png")
    assert len(list(folder.glob("*.png"))) == video.num_frames
    back = Video.open(folder)
    np.testing.assert_array_equal(back.frames, video.frames)
    assert back.fps == 12.5


def test_saving_fewer_frames_into_a_png_folder_leaves_no_stale_frames(tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    Video(moving_frames(6), fps=8).save(folder, "png")
    (folder / "notes.png").write_bytes(b"not ours")  # a file img2vid did not name is left alone
    shorter = Video(moving_frames(3), fps=8)
    shorter.save(folder, "png")
    assert sorted(p.name for p in folder.iterdir()) == [
        "frame_00000.png", "frame_00001.png", "frame_00002.png", "notes.png",
    ]  # fmt: skip
    (folder / "notes.png").unlink()
    np.testing.assert_array_equal(Video.open(folder).frames, shorter.frames)


def test_an_unreadable_video_file_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = Video(moving_frames(2), fps=8).save(tmp_path / "clip.mp4")

    def refuse(self: Path) -> bytes:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "read_bytes", refuse)
    with pytest.raises(InvalidInputError, match="cannot read .*Permission denied") as caught:
        Video.open(target)
    assert caught.value.field == "video"


@pytest.mark.parametrize("damage", [b"not a png", None], ids=["garbage", "truncated"])
def test_a_broken_frame_in_a_png_folder_is_a_clear_error(tmp_path: Path, damage: bytes | None) -> None:
    folder = Video(moving_frames(3), fps=8).save(tmp_path / "frames", "png")
    broken = sorted(folder.glob("*.png"))[1]
    broken.write_bytes(damage if damage is not None else broken.read_bytes()[:80])
    with pytest.raises(InvalidInputError, match="could not be read") as caught:
        Video.open(folder)
    assert caught.value.field == "video" and broken.name in caught.value.message


@pytest.mark.parametrize("fmt", ["mp4", "webm", "webp", "gif"])
def test_save_by_suffix_then_open(tmp_path: Path, fmt: str) -> None:
    target = tmp_path / "nested" / f"clip.{fmt}"
    Video(moving_frames(3), fps=6).save(target)
    assert target.is_file() and not target.with_name(target.name + ".part").exists()
    assert Video.open(target).num_frames == 3


def test_odd_sizes_are_handled() -> None:
    frames = moving_frames(4, width=103, height=57)
    video = Video(frames, fps=7)
    mp4 = Video.from_bytes(video.to_bytes("mp4"))
    # H.264 4:2:0 needs even sizes: one repeated column and row, the picture itself intact.
    assert (mp4.width, mp4.height) == (104, 58)
    assert mean_abs_diff(mp4.frames[:, :57, :103], frames) < 4.0
    for fmt in ("webm", "webp", "gif"):
        back = Video.from_bytes(video.to_bytes(fmt))
        assert (back.width, back.height) == (103, 57), fmt


@pytest.mark.parametrize("settings", [
    pytest.param({"options": {"bf": "3", "g": "250", "preset": "slow"}}, id="b-frames-long-gop"),
    pytest.param({"pix_fmt": "yuv444p", "options": {"crf": "10"}}, id="yuv444"),
    pytest.param({"options": {"g": "1"}}, id="all-intra"),
    pytest.param({"codec": "mpeg4", "options": {"bf": "2"}}, id="mpeg4-part2"),
    pytest.param({"container": "matroska", "codec": "libvpx-vp9", "options": {"b": "0", "crf": "30"}}, id="vp9-webm"),
])
def test_mp4s_from_other_encoders_decode(settings: dict) -> None:
    frames = moving_frames(9)
    data = encode_with(frames, Fraction(24000, 1001), **settings)
    video = Video.from_bytes(data)
    assert video.num_frames == 9
    assert (video.width, video.height) == (96, 64)
    assert video.fps == pytest.approx(23.976, rel=1e-3)
    assert mean_abs_diff(video.frames, frames) < 6.0
    assert video.frames.flags.c_contiguous and video.frames.dtype == np.uint8


def test_odd_sized_mp4_from_another_encoder_decodes() -> None:
    frames = moving_frames(3, width=95, height=63)
    data = encode_with(frames, Fraction(10), pix_fmt="yuv444p")  # 4:4:4 allows odd sizes
    assert (Video.from_bytes(data).width, Video.from_bytes(data).height) == (95, 63)


@pytest.mark.parametrize("data", [b"", b"\x00\x00\x00\x18ftypmp42 then garbage", b"plain text, not a video"])
def test_garbage_is_a_clear_error(data: bytes) -> None:
    with pytest.raises(InvalidInputError) as caught:
        Video.from_bytes(data)
    assert caught.value.field == "video"


def test_comfy_round_trip_is_exact_and_float32() -> None:
    torch = pytest.importorskip("torch")
    frames = moving_frames()
    tensor = Video(frames, fps=8).to_comfy()
    assert tensor.dtype == torch.float32 and tuple(tensor.shape) == frames.shape
    assert 0.0 <= float(tensor.min()) and float(tensor.max()) <= 1.0
    back = Video.from_comfy(tensor, fps=8)
    np.testing.assert_array_equal(back.frames, frames)
    from_numpy = Video.from_comfy(tensor.numpy(), fps=8)
    np.testing.assert_array_equal(from_numpy.frames, frames)


def test_invalid_frames_and_formats_are_named() -> None:
    with pytest.raises(InvalidInputError, match="frames"):
        Video(np.zeros((4, 4, 3), dtype=np.uint8), fps=8)
    with pytest.raises(InvalidInputError, match="uint8"):
        Video(np.zeros((1, 4, 4, 3), dtype=np.float32), fps=8)
    for bad_fps in (0, True, float("nan"), "8"):
        with pytest.raises(InvalidInputError, match="fps"):
            Video(moving_frames(1), fps=bad_fps)
    assert Video(moving_frames(1), fps=np.float32(7.5)).fps == 7.5  # numpy's numbers are numbers
    with pytest.raises(InvalidInputError, match="mp4, webm, webp, gif, png") as caught:
        Video(moving_frames(1), fps=8).to_bytes("avi")
    assert caught.value.field == "format"


def test_comfy_images_with_nan_are_refused() -> None:
    torch = pytest.importorskip("torch")
    images = torch.zeros((2, 4, 4, 3))
    images[1, 2, 2, 0] = float("nan")
    for value in (images, images.numpy()):
        with pytest.raises(InvalidInputError, match="NaN") as caught:
            Video.from_comfy(value, fps=8)
        assert caught.value.field == "images"
