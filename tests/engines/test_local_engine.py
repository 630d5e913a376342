"""LocalEngine with the tiny model on the CPU: parity with diffusers, seeds, progress, cancel, sizes, errors."""

from __future__ import annotations

import threading

import httpx
import numpy as np
import pytest

pytest.importorskip("diffusers")

import torch  # noqa: E402

from img2vid import VideoRequest  # noqa: E402
from img2vid.engines.local import DEFAULT_MODEL, LocalEngine  # noqa: E402
from img2vid.errors import CancelledError, InvalidInputError, ModelError, OutOfMemoryError, ServiceError  # noqa: E402
from img2vid.fitting import MultipleOf  # noqa: E402
from support.local import HEIGHT, WIDTH, diffusers_frames, small_image  # noqa: E402


@pytest.fixture
def engine(tiny_engine: LocalEngine) -> LocalEngine:
    return tiny_engine


def _request(**options: object) -> VideoRequest:
    base: dict[str, object] = {"image": small_image(), "seed": 7, "frames": 2, "steps": 2}
    base.update(options)
    return VideoRequest(**base)  # type: ignore[arg-type]


def test_frames_match_diffusers_pipeline_within_one_level(engine: LocalEngine) -> None:
    image = small_image(3)
    options = dict(
        frames=3, steps=3, fps=9, motion_bucket_id=90, noise_aug_strength=0.05, min_guidance_scale=1.3, decode_chunk_size=2
    )
    ours = engine.generate(
        VideoRequest(
            image=image, seed=1234, cfg_scale=2.5, frames=3, steps=3, fps=9, motion_bucket_id=90,
            noise_aug_strength=0.05, min_guidance_scale=1.3, decode_chunk_size=2,
        )
    )
    reference = diffusers_frames(
        engine.components(), image, seed=1234, num_frames=options["frames"], num_inference_steps=options["steps"],
        fps=options["fps"], motion_bucket_id=options["motion_bucket_id"], noise_aug_strength=options["noise_aug_strength"],
        min_guidance_scale=options["min_guidance_scale"], max_guidance_scale=2.5, decode_chunk_size=2,
    )
    assert ours.frames.shape == reference.shape == (3, HEIGHT, WIDTH, 3)
    difference = np.abs(ours.frames.astype(np.int16) - reference.astype(np.int16))
    assert difference.max() <= 1
    # The frames are not trivially equal (a constant image would pass any tolerance).
    assert ours.frames.std() > 5
    assert ours.fps == 9 and ours.seed == 1234


def test_without_guidance_also_matches_diffusers(engine: LocalEngine) -> None:
    image = small_image(4)
    ours = engine.generate(VideoRequest(image=image, seed=5, cfg_scale=1.0, frames=2, steps=2, decode_chunk_size=2))
    reference = diffusers_frames(
        engine.components(), image, seed=5, num_frames=2, num_inference_steps=2, min_guidance_scale=1.0,
        max_guidance_scale=1.0, decode_chunk_size=2,
    )
    assert np.abs(ours.frames.astype(np.int16) - reference.astype(np.int16)).max() <= 1


def test_same_seed_same_frames_and_other_seed_other_frames(engine: LocalEngine) -> None:
    first = engine.generate(_request(seed=99))
    second = engine.generate(_request(seed=99))
    other = engine.generate(_request(seed=100))
    assert np.array_equal(first.frames, second.frames)
    assert not np.array_equal(first.frames, other.frames)


def test_seed_zero_draws_a_seed_and_reports_it(engine: LocalEngine) -> None:
    drawn = engine.generate(_request(seed=0))
    assert drawn.seed is not None and 1 <= drawn.seed <= 4294967294
    again = engine.generate(_request(seed=drawn.seed))
    assert np.array_equal(drawn.frames, again.frames)


def test_defaults_come_from_the_model(engine: LocalEngine) -> None:
    video = engine.generate(VideoRequest(image=small_image(), seed=3))
    assert video.num_frames == 2  # tiny's trained frame count (25 for SVD-XT)
    assert video.fps == 7


def test_progress_per_step_then_per_decode_chunk(engine: LocalEngine) -> None:
    events: list[tuple[float | None, str]] = []
    engine.generate(_request(frames=3, steps=3, decode_chunk_size=2), progress=lambda f, t: events.append((f, t)))
    texts = [text for _, text in events]
    assert texts == ["step 1/3", "step 2/3", "step 3/3", "decoding frames 1-2/3", "decoding frames 3-3/3"]
    fractions = [f for f, _ in events]
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)
    assert all(f is not None and 0 < f <= 1 for f in fractions)


def test_first_run_reports_loading_before_the_steps() -> None:
    events: list[tuple[float | None, str]] = []
    LocalEngine("tiny", device="cpu").generate(_request(), progress=lambda f, t: events.append((f, t)))
    assert events[0] == (None, "loading model tiny")
    assert [t for _, t in events[1:3]] == ["step 1/2", "step 2/2"]


def test_cancel_between_steps_stops_the_run(engine: LocalEngine) -> None:
    stop = threading.Event()
    events: list[str] = []

    def on_progress(fraction: float | None, text: str) -> None:
        events.append(text)
        stop.set()  # the user presses Stop during the first step

    with pytest.raises(CancelledError):
        engine.generate(_request(steps=4), progress=on_progress, cancel=stop.is_set)
    assert events == ["step 1/4"]
    # The engine is usable again afterwards.
    assert engine.generate(_request()).num_frames == 2


def test_output_keeps_a_size_that_is_a_multiple_of_64(engine: LocalEngine) -> None:
    video = engine.generate(_request(image=small_image()))
    assert (video.width, video.height) == (WIDTH, HEIGHT)


def test_other_sizes_are_fitted_to_multiples_of_64_within_the_budget(engine: LocalEngine) -> None:
    rule = engine.size_rule
    assert isinstance(rule, MultipleOf) and rule.multiple == 64 and rule.max_pixels == 1024 * 576
    width, height = rule.target_for(1000, 700)
    assert width % 64 == 0 and height % 64 == 0 and width * height <= 1024 * 576
    assert rule.target_for(512, 320) == (512, 320)
    # generate() fits with the request's fit mode: a smaller budget keeps this fast.
    small = LocalEngine.from_components(engine.components(), device="cpu")
    small.size_rule = MultipleOf(64, max_pixels=128 * 128)
    video = small.generate(_request(image=np.full((100, 150, 3), 128, np.uint8)))
    assert (video.width, video.height) == small.size_rule.target_for(150, 100)
    with pytest.raises(InvalidInputError) as info:
        small.generate(_request(image=np.full((100, 150, 3), 128, np.uint8), fit="strict"))
    assert "multiples of 64" in str(info.value)


def test_shared_engine_is_one_per_model_device_dtype() -> None:
    a = LocalEngine.shared("tiny", device="cpu")
    b = LocalEngine.shared("tiny", device="cpu")
    c = LocalEngine.shared("tiny", device="cpu", dtype="bfloat16")
    assert a is b and a is not c
    # Keyed by what the names resolve to: another spelling of the same device and dtype loads nothing new.
    assert LocalEngine.shared("tiny", device="CPU", dtype="fp32") is LocalEngine.shared(" tiny", device="cpu", dtype="float32")
    if not torch.cuda.is_available() and not torch.backends.mps.is_available():
        assert LocalEngine.shared("tiny") is a


def test_with_block_loads_before_the_first_job_and_gives_the_memory_back_after() -> None:
    with LocalEngine("tiny", device="cpu") as engine:
        assert engine.loaded  # load() ran on entry: the first job does not pay for it
        first = engine.generate(_request(seed=4))
    assert not engine.loaded
    # A closed engine may be used again: it loads anew and makes the same frames.
    assert np.array_equal(engine.generate(_request(seed=4)).frames, first.frames)
    engine.close()


def test_closing_a_shared_engine_leaves_it_warm_until_the_shared_ones_are_closed() -> None:
    shared = LocalEngine.shared("tiny", device="cpu", dtype="bfloat16")
    shared.load()
    shared.close()  # a caller is done with it; the next caller in this process still finds it warm
    assert shared.loaded and LocalEngine.shared("tiny", device="cpu", dtype="bfloat16") is shared
    LocalEngine.close_shared()
    assert not shared.loaded and LocalEngine.shared("tiny", device="cpu", dtype="bfloat16") is not shared


def test_the_video_reports_how_long_each_phase_took(engine: LocalEngine) -> None:
    import time

    started = time.perf_counter()
    video = engine.generate(_request())
    wall = time.perf_counter() - started
    assert set(video.timings) == {"encode", "denoise", "decode"}
    assert all(seconds > 0 for seconds in video.timings.values())
    assert sum(video.timings.values()) <= wall


def test_concurrent_generations_from_threads_are_each_deterministic(engine: LocalEngine) -> None:
    expected = engine.generate(_request(seed=11)).frames
    results: list[np.ndarray] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            results.append(engine.generate(_request(seed=11)).frames)
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=work) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and len(results) == 2
    assert all(np.array_equal(r, expected) for r in results)


@pytest.mark.parametrize(
    "error",
    [
        torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB"),
        RuntimeError("MPS backend out of memory (MPS allocated: 17.00 GB, other allocations: 1.00 GB)"),
    ],
)
def test_out_of_memory_becomes_img2vids_out_of_memory_error(
    engine: LocalEngine, monkeypatch: pytest.MonkeyPatch, error: RuntimeError
) -> None:
    from img2vid.engines.local import engine as engine_module

    def explode(*args: object, **kwargs: object) -> None:
        raise error

    monkeypatch.setattr(engine_module, "run_svd", explode)
    with pytest.raises(OutOfMemoryError) as info:
        engine.generate(_request())
    assert isinstance(info.value, ServiceError)  # still what callers that catch ServiceError catch
    assert "out of memory" in str(info.value) and "decode chunk" in str(info.value)


def test_other_runtime_errors_are_not_called_out_of_memory(engine: LocalEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    from img2vid.engines.local import engine as engine_module

    def explode(*args: object, **kwargs: object) -> None:
        raise RuntimeError("expected all tensors to be on the same device")

    monkeypatch.setattr(engine_module, "run_svd", explode)
    with pytest.raises(RuntimeError, match="same device"):
        engine.generate(_request())


def test_out_of_memory_while_placing_the_model_says_what_to_try(monkeypatch: pytest.MonkeyPatch) -> None:
    from img2vid.engines.local import engine as engine_module

    def explode(*args: object, **kwargs: object) -> None:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(engine_module, "place_components", explode)
    fresh = LocalEngine("tiny", device="cpu")
    with pytest.raises(OutOfMemoryError) as info:
        fresh.load()
    assert "out of memory holding the model's weights" in str(info.value) and "offload" in str(info.value)
    assert repr(fresh).endswith("not loaded)")


@pytest.mark.parametrize(
    ("option", "value", "words"),
    [("device", "tpu", "device must be"), ("dtype", "int8", "float32, float16 or bfloat16"), ("device", "cuda:7", "device")],
)
def test_bad_device_or_dtype_names_the_option(option: str, value: str, words: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        LocalEngine("tiny", **{option: value})
    assert words in str(info.value) and info.value.field == option


def test_missing_path_says_what_to_do(tmp_path) -> None:
    for missing in (str(tmp_path / "svd_xt.safetensors"), str(tmp_path / "nothing" / "here")):
        with pytest.raises(ModelError) as info:
            LocalEngine(missing).load()
        assert missing in str(info.value) and "--model tiny" in str(info.value)


def test_corrupt_checkpoint_is_a_model_error(tmp_path) -> None:
    path = tmp_path / "svd_xt.safetensors"
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all, a truncated download")
    with pytest.raises(ModelError) as info:
        LocalEngine(str(path)).load()
    assert "not a valid safetensors file" in str(info.value) and "download it again" in str(info.value)


def test_checkpoint_of_another_model_is_a_model_error(tmp_path) -> None:
    from safetensors.torch import save_file

    path = tmp_path / "sd15.safetensors"
    save_file({"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(320, 4, 3, 3)}, str(path))
    with pytest.raises(ModelError) as info:
        LocalEngine(str(path)).load()
    assert "not a Stable Video Diffusion checkpoint" in str(info.value)


def test_pickled_checkpoint_is_refused(tmp_path) -> None:
    path = tmp_path / "svd_xt.ckpt"
    path.write_bytes(b"pickle")
    with pytest.raises(ModelError) as info:
        LocalEngine(str(path)).load()
    assert ".safetensors" in str(info.value)


def test_offline_hub_id_not_in_cache_says_what_to_do(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(ModelError) as info:
        LocalEngine(DEFAULT_MODEL, device="cpu").load()
    message = str(info.value)
    assert DEFAULT_MODEL in message and "offline" in message
    assert "HF_TOKEN" in message and f"https://huggingface.co/{DEFAULT_MODEL}" in message
    assert "--model" in message


def test_gated_hub_model_names_the_token_and_the_licence(monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub
    from huggingface_hub.errors import GatedRepoError

    def gated(*args: object, **kwargs: object) -> None:
        url = f"https://huggingface.co/{DEFAULT_MODEL}/resolve/main/model_index.json"
        response = httpx.Response(401, request=httpx.Request("GET", url))
        raise GatedRepoError("401 Client Error: access to model is restricted", response=response)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", gated)
    with pytest.raises(ModelError) as info:
        LocalEngine(DEFAULT_MODEL, device="cpu").load()
    message = str(info.value)
    assert "gated" in message and "HF_TOKEN" in message and f"https://huggingface.co/{DEFAULT_MODEL}" in message


def test_diffusers_folder_gives_the_same_frames(engine: LocalEngine, tmp_path) -> None:
    parts = engine.components()
    for name, part in (("unet", parts.unet), ("vae", parts.vae), ("image_encoder", parts.image_encoder), ("scheduler", parts.scheduler)):
        part.save_pretrained(tmp_path / name)
    from_folder = LocalEngine(str(tmp_path), device="cpu")
    ours, theirs = from_folder.generate(_request()).frames, engine.generate(_request()).frames
    # Equal weights; transformers' loaded CLIP may differ in the last float bit, hence one level.
    assert np.abs(ours.astype(np.int16) - theirs.astype(np.int16)).max() <= 1


def test_incomplete_folder_names_what_is_missing(tmp_path) -> None:
    (tmp_path / "unet").mkdir()
    with pytest.raises(ModelError) as info:
        LocalEngine(str(tmp_path)).load()
    assert "vae/config.json" in str(info.value)


def test_fp16_keeps_the_vae_encoder_in_fp32() -> None:
    # As diffusers does: SVD's VAE encoder overflows in fp16; the decoder runs in fp16.
    parts = LocalEngine("tiny", device="cpu", dtype="float16").components()
    assert parts.unet.dtype == torch.float16 and parts.image_encoder.dtype == torch.float16
    assert parts.vae.encoder.conv_in.weight.dtype == torch.float32 and parts.vae.quant_conv.weight.dtype == torch.float32
    assert parts.vae.decoder.conv_in.weight.dtype == torch.float16


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
def test_gpu_generates_finite_repeatable_frames(dtype: str) -> None:
    engine = LocalEngine("tiny", device="cuda", dtype=dtype)
    first = engine.generate(_request(seed=21), progress=None)
    second = engine.generate(_request(seed=21))
    assert first.frames.shape == (2, HEIGHT, WIDTH, 3)
    assert first.frames.std() > 5  # not a constant (NaN-filled latents decode to one colour)
    assert np.abs(first.frames.astype(np.int16) - second.frames.astype(np.int16)).max() <= 2


@pytest.mark.gpu
def test_gpu_offload_gives_the_same_frames() -> None:
    resident = LocalEngine("tiny", device="cuda", dtype="float32", offload=False).generate(_request(seed=8))
    offloaded = LocalEngine("tiny", device="cuda", dtype="float32", offload=True).generate(_request(seed=8))
    assert np.abs(resident.frames.astype(np.int16) - offloaded.frames.astype(np.int16)).max() <= 1


def test_half_precision_prefers_a_folders_fp16_files(engine: LocalEngine, tmp_path) -> None:
    import copy

    parts = engine.components()
    marked_unet = copy.deepcopy(parts.unet)
    with torch.no_grad():
        marked_unet.conv_in.bias.fill_(0.5)
    for name, part in (("unet", parts.unet), ("vae", parts.vae), ("image_encoder", parts.image_encoder), ("scheduler", parts.scheduler)):
        part.save_pretrained(tmp_path / name)
    for name, part in (("unet", marked_unet), ("vae", parts.vae), ("image_encoder", parts.image_encoder)):
        part.save_pretrained(tmp_path / name, variant="fp16")
    half = LocalEngine(str(tmp_path), device="cpu", dtype="bfloat16").components()
    full = LocalEngine(str(tmp_path), device="cpu", dtype="float32").components()
    assert torch.all(half.unet.conv_in.bias == 0.5) and half.unet.dtype == torch.bfloat16
    assert not torch.all(full.unet.conv_in.bias == 0.5) and full.unet.dtype == torch.float32
