"""``Video``: the one result type, and its conversions to every place a video goes.

Frames are one C-contiguous uint8 array of shape T×H×W×3, so every conversion is an array operation:
to ComfyUI's IMAGE layout (float32 B×H×W×C in 0..1) and back without per-frame Python loops, and to
encoders frame by frame only where the codec itself works that way. Encoding and decoding happen in
memory (``io.BytesIO``), never through temp files. Frame rate and count are always read from the file,
never assumed. This module must not import torch at import time: ComfyUI conversions import it lazily.
"""

from __future__ import annotations

import io
import numbers
import os
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InvalidInputError

__all__ = ["Video", "VIDEO_FORMATS", "FINISH_SUCCESS", "FINISH_CONTENT_FILTERED"]

VIDEO_FORMATS: tuple[str, ...] = ("mp4", "webm", "webp", "gif", "png")
FINISH_SUCCESS = "SUCCESS"
FINISH_CONTENT_FILTERED = "CONTENT_FILTERED"


@dataclass(eq=False)
class Video:
    """Frames, their rate, the seed that made them, why generation finished, and how the engine made them."""

    frames: np.ndarray
    fps: float
    seed: int | None = None
    finish_reason: str = FINISH_SUCCESS
    #: What the engine actually ran with (the local engine: device, dtype, speed, memory, offload, decode
    #: chunk...); empty where the engine does not say (a remote server).
    engine_settings: dict[str, str | int | float | bool] = field(default_factory=dict)
    #: Seconds each phase of the run took where the engine measures them (the local engine: ``encode``,
    #: ``denoise``, ``decode``), for benchmarks and logs; empty where it does not (a remote server).
    timings: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        frames = self.frames
        if not isinstance(frames, np.ndarray) or frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] < 1:
            shape = getattr(frames, "shape", type(frames).__name__)
            raise InvalidInputError(
                f"frames must be a T×H×W×3 uint8 array with at least one frame; got {shape}",
                field="frames",
                value=shape,
                allowed="T×H×W×3 uint8",
            )
        if frames.dtype != np.uint8:
            raise InvalidInputError(
                f"frames must be uint8; got {frames.dtype}", field="frames", value=str(frames.dtype), allowed="uint8"
            )
        self.frames = np.ascontiguousarray(frames)
        fps = self.fps
        if isinstance(fps, bool) or not (isinstance(fps, numbers.Real) and 0 < float(fps) <= 1000):
            raise InvalidInputError.for_field("fps", self.fps, "a number above 0 and at most 1000")
        self.fps = float(self.fps)

    # ------------------------------------------------------------------ shape

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def width(self) -> int:
        return int(self.frames.shape[2])

    @property
    def height(self) -> int:
        return int(self.frames.shape[1])

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.num_frames / self.fps

    def __repr__(self) -> str:
        return (
            f"Video({self.num_frames} frames, {self.width}x{self.height}, {self.fps:g} fps, "
            f"seed={self.seed}, finish_reason={self.finish_reason!r})"
        )

    # ------------------------------------------------------------------ ComfyUI

    def to_comfy(self) -> Any:
        """ComfyUI's IMAGE: a float32 torch tensor T×H×W×3 in 0..1 (imports torch, which ComfyUI has)."""
        import torch

        # One numpy pass that writes float32 directly (measured about 2x faster than torch's
        # cast-then-divide on CPU, which touches the 4x larger output twice); torch then wraps it, no copy.
        return torch.from_numpy(np.divide(self.frames, np.float32(255.0), dtype=np.float32))

    @classmethod
    def from_comfy(cls, images: Any, fps: float, *, seed: int | None = None) -> Video:
        """A video from ComfyUI's IMAGE (a torch tensor or numpy array, B×H×W×C, floats in 0..1)."""
        if type(images).__module__.split(".")[0] == "torch":
            import torch

            tensor = images.detach()
            if tensor.ndim == 3:
                tensor = tensor.unsqueeze(0)
            if tensor.ndim != 4 or tensor.shape[-1] not in (1, 3, 4):
                raise InvalidInputError(
                    f"IMAGE must be B×H×W×C; got {tuple(tensor.shape)}", field="images", allowed="B×H×W×3"
                )
            tensor = tensor[..., :3] if tensor.shape[-1] >= 3 else tensor.expand(*tensor.shape[:-1], 3)
            if not bool(torch.isfinite(tensor).all()):
                raise InvalidInputError("IMAGE contains NaN or infinite values", field="images", allowed="values in 0..1")
            frames = tensor.float().mul(255.0).add_(0.5).clamp_(0.0, 255.0).to(torch.uint8).cpu().numpy()
        else:
            array = np.asarray(images)
            if array.ndim == 3:
                array = array[None]
            if array.ndim != 4 or array.shape[-1] not in (1, 3, 4):
                raise InvalidInputError(
                    f"IMAGE must be B×H×W×C; got {array.shape}", field="images", allowed="B×H×W×3"
                )
            array = array[..., :3] if array.shape[-1] >= 3 else np.repeat(array, 3, axis=-1)
            if array.dtype == np.uint8:
                frames = array
            else:
                if not np.all(np.isfinite(array)):
                    raise InvalidInputError(
                        "IMAGE contains NaN or infinite values", field="images", allowed="values in 0..1"
                    )
                frames = (np.clip(array.astype(np.float32), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        return cls(frames=frames, fps=fps, seed=seed)

    # ------------------------------------------------------------------ decode

    @classmethod
    def from_bytes(cls, data: bytes, *, seed: int | None = None, finish_reason: str = FINISH_SUCCESS) -> Video:
        """Decode MP4, WebM (PyAV), animated WebP or GIF (Pillow); rate and count come from the file."""
        kind = _sniff(data)
        if kind in ("mp4", "webm"):
            frames, fps = _decode_av(data)
        elif kind in ("gif", "webp"):
            frames, fps = _decode_pillow(data)
        else:
            raise InvalidInputError(
                "video is not a format img2vid can read", field="video", allowed="MP4, WebM, animated WebP or GIF"
            )
        return cls(frames=frames, fps=fps, seed=seed, finish_reason=finish_reason)

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> Video:
        """Read a video file, or a folder of PNG frames written by :meth:`save`."""
        path = Path(path)
        if path.is_dir():
            return _read_png_folder(path)
        if not path.is_file():
            raise InvalidInputError(f"no such video file: {path}", field="video", value=str(path))
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise InvalidInputError(f"cannot read {path}: {exc.strerror}", field="video", value=str(path)) from exc
        return cls.from_bytes(data)

    # ------------------------------------------------------------------ encode

    def to_bytes(self, fmt: str = "mp4", *, quality: int | None = None) -> bytes:
        """The video encoded in memory as ``mp4`` (H.264), ``webm`` (VP9), ``webp`` or ``gif``.

        ``quality`` is codec-specific: CRF for mp4/webm (lower is better), 0..100 for webp.
        """
        fmt = _check_format(fmt)
        if fmt == "mp4":
            return _encode_h264(self.frames, self.fps, crf=18 if quality is None else quality)
        if fmt == "webm":
            return _encode_vp9(self.frames, self.fps, crf=32 if quality is None else quality)
        if fmt == "webp":
            return _encode_pillow(self.frames, self.fps, "WEBP", quality=90 if quality is None else quality)
        if fmt == "gif":
            return _encode_pillow(self.frames, self.fps, "GIF")
        raise InvalidInputError(
            "png is a folder of frames, not one file: use Video.save(folder, 'png')",
            field="format",
            value=fmt,
            allowed="mp4, webm, webp or gif",
        )

    def save(self, path: str | os.PathLike[str], fmt: str | None = None) -> Path:
        """Write to ``path``; the format comes from ``fmt`` or the path's suffix (no suffix: PNG folder).

        A PNG folder holds ``frame_00000.png`` onwards; frames of an earlier, longer video there are removed.
        """
        path = Path(path)
        if fmt is None:
            suffix = path.suffix.lower().lstrip(".")
            fmt = suffix if suffix else "png"
        fmt = _check_format(fmt)
        if fmt == "png":
            _write_png_folder(self, path)
            return path
        data = self.to_bytes(fmt)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".part")
        tmp.write_bytes(data)
        tmp.replace(path)  # never leave a half-written file under the final name
        return path


# ---------------------------------------------------------------------- helpers


def _check_format(fmt: str) -> str:
    fmt = str(fmt).lower().lstrip(".")
    if fmt not in VIDEO_FORMATS:
        raise InvalidInputError.for_field("format", fmt, "one of " + ", ".join(VIDEO_FORMATS))
    return fmt


def _sniff(data: bytes) -> str | None:
    head = bytes(data[:16])
    if len(head) >= 8 and head[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip"):
        return "mp4"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "webm"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "webp"
    return None


def _rate(fps: float) -> Fraction:
    # 29.97 and friends survive as 30000/1001; integer rates stay integers.
    return Fraction(fps).limit_denominator(1001)


def _decode_av(data: bytes) -> tuple[np.ndarray, float]:
    import av

    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            if not container.streams.video:
                raise InvalidInputError("video has no video stream", field="video")
            stream = container.streams.video[0]
            # Frame-level threads: several frames decode at once on a multi-core machine.
            stream.thread_type = "AUTO"
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            fps = float(rate) if rate else 0.0
            expected = stream.frames
            out: np.ndarray | None = None
            collected: list[np.ndarray] = []
            count = 0
            for frame in container.decode(stream):
                array = frame.to_ndarray(format="rgb24")
                if out is None and expected > 0:
                    out = np.empty((expected, *array.shape), dtype=np.uint8)
                if out is not None and count < out.shape[0] and out.shape[1:] == array.shape:
                    out[count] = array
                else:
                    if out is not None:  # the header's count or size was wrong: fall back to a list
                        collected.extend(out[:count])
                        out = None
                    collected.append(array)
                count += 1
    except InvalidInputError:
        raise
    except (av.FFmpegError, ValueError, OSError) as exc:
        raise InvalidInputError(f"video could not be decoded: {exc}", field="video") from exc
    if count == 0:
        raise InvalidInputError("video has no decodable frames", field="video")
    frames = out[:count] if out is not None else np.stack(collected)
    if not fps or fps <= 0:
        fps = 25.0  # a stream with no rate at all: FFmpeg's own default
    return np.ascontiguousarray(frames), fps


def _even(frames: np.ndarray) -> np.ndarray:
    """Pad to even width and height by repeating the last column/row: 4:2:0 chroma needs even sizes."""
    _, h, w, _ = frames.shape
    pad_h, pad_w = h % 2, w % 2
    if not (pad_h or pad_w):
        return frames
    return np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")


def _encode_av(
    frames: np.ndarray,
    fps: float,
    *,
    container_format: str,
    codec: str,
    pix_fmt: str,
    options: dict[str, str],
    container_options: dict[str, str] | None = None,
) -> bytes:
    import av

    buffer = io.BytesIO()
    _, height, width, _ = frames.shape
    with av.open(buffer, mode="w", format=container_format, options=container_options or {}) as container:
        stream = container.add_stream(codec, rate=_rate(fps))
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        stream.options = options
        stream.thread_type = "AUTO"
        for array in frames:
            frame = av.VideoFrame.from_ndarray(array, format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return buffer.getvalue()


def _encode_h264(frames: np.ndarray, fps: float, *, crf: int) -> bytes:
    # H.264 in yuv420p: the form every browser plays. (FFmpeg's faststart needs a named file, so the index
    # stays at the end; browsers fetch it with a range request.)
    return _encode_av(
        _even(frames),
        fps,
        container_format="mp4",
        codec="libx264",
        pix_fmt="yuv420p",
        options={"crf": str(crf), "preset": "medium"},
    )


def _encode_vp9(frames: np.ndarray, fps: float, *, crf: int) -> bytes:
    # VP9 codes odd sizes as they are, so WebM keeps the exact frame size.
    return _encode_av(
        frames,
        fps,
        container_format="webm",
        codec="libvpx-vp9",
        pix_fmt="yuv420p",
        options={"crf": str(crf), "b": "0", "deadline": "good", "cpu-used": "4", "row-mt": "1"},
    )


def _encode_pillow(frames: np.ndarray, fps: float, fmt: str, *, quality: int = 90) -> bytes:
    from PIL import Image

    images = [Image.fromarray(frame) for frame in frames]
    buffer = io.BytesIO()
    duration = max(1, round(1000.0 / fps))
    extra: dict[str, Any] = {"quality": quality, "method": 4} if fmt == "WEBP" else {"optimize": False}
    images[0].save(
        buffer, format=fmt, save_all=True, append_images=images[1:], duration=duration, loop=0, **extra
    )
    return buffer.getvalue()


def _decode_pillow(data: bytes) -> tuple[np.ndarray, float]:
    from PIL import Image, ImageSequence, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            durations: list[float] = []
            arrays: list[np.ndarray] = []
            for frame in ImageSequence.Iterator(img):
                # Convert first: WebP fills in a frame's duration only once the frame is loaded.
                arrays.append(np.asarray(frame.convert("RGB"), dtype=np.uint8))
                durations.append(float(frame.info.get("duration", 0) or 0))
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise InvalidInputError(f"video could not be decoded: {exc}", field="video") from exc
    if not arrays:
        raise InvalidInputError("video has no frames", field="video")
    positive = [d for d in durations if d > 0]
    fps = 1000.0 / (sum(positive) / len(positive)) if positive else 10.0
    return np.stack(arrays), fps


_PNG_PATTERN = "frame_{:05d}.png"


def _write_png_folder(video: Video, folder: Path) -> None:
    from PIL import Image, PngImagePlugin

    folder.mkdir(parents=True, exist_ok=True)
    info = PngImagePlugin.PngInfo()
    # The folder keeps its frame rate in each frame's text chunk, so a round trip keeps it.
    info.add_text("img2vid:fps", repr(video.fps))
    for index, frame in enumerate(video.frames):
        Image.fromarray(frame).save(folder / _PNG_PATTERN.format(index), format="PNG", pnginfo=info, compress_level=4)
    # Frames a longer video left here earlier would read back as part of this one: remove them (only
    # files named exactly as this function names frames).
    for path in folder.glob("frame_*.png"):
        index = path.stem.removeprefix("frame_")
        if len(index) == 5 and index.isdigit() and int(index) >= video.num_frames:
            path.unlink()


def _read_png_folder(folder: Path) -> Video:
    from PIL import Image, UnidentifiedImageError

    paths = sorted(folder.glob("*.png"))
    if not paths:
        raise InvalidInputError(f"{folder} holds no PNG frames", field="video", value=str(folder))
    fps = 8.0
    arrays = []
    for index, path in enumerate(paths):
        try:
            with Image.open(path) as img:
                if index == 0:
                    try:
                        fps = float(img.info.get("img2vid:fps", fps))
                    except ValueError:
                        pass
                arrays.append(np.asarray(img.convert("RGB"), dtype=np.uint8))
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
            raise InvalidInputError(
                f"the PNG frame {path} could not be read: {exc}", field="video", value=str(path)
            ) from exc
    if len({a.shape for a in arrays}) != 1:
        raise InvalidInputError(f"the PNG frames in {folder} differ in size", field="video", value=str(folder))
    return Video(frames=np.stack(arrays), fps=fps)
