"""Device, dtype and memory choices of the local engine (no GPU needed: the choices are pure functions)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from img2vid.engines.local.device import choose_device, choose_dtype, choose_offload, decode_chunk  # noqa: E402
from img2vid.errors import InvalidInputError  # noqa: E402

GIB = 1024**3


def test_cpu_defaults_to_float32_and_gpus_to_half() -> None:
    assert choose_dtype(torch.device("cpu")) == torch.float32
    assert choose_dtype(torch.device("mps")) == torch.float16


@pytest.mark.parametrize(("name", "dtype"), [("float16", torch.float16), ("bf16", torch.bfloat16), ("FLOAT32", torch.float32)])
def test_dtype_can_be_overridden(name: str, dtype: torch.dtype) -> None:
    assert choose_dtype(torch.device("cpu"), name) == dtype


def test_cpu_is_chosen_without_a_gpu_and_can_be_asked_for() -> None:
    assert choose_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        assert choose_device(None).type in ("cpu", "mps")
        with pytest.raises(InvalidInputError) as info:
            choose_device("cuda")
        assert "--device cpu" in str(info.value)


def test_decode_chunk_follows_free_memory_and_an_explicit_value_wins() -> None:
    common = dict(dtype=torch.float16, frames=25, width=1024, height=576)
    roomy = decode_chunk(free=60 * GIB, **common)
    tight = decode_chunk(free=6 * GIB, **common)
    assert roomy == 25
    assert tight in (14, 8, 4, 2, 1)
    # A little more or less free memory does not change the chunk (it changes the frames slightly).
    assert decode_chunk(free=int(6.2 * GIB), **common) == tight
    assert decode_chunk(free=60 * GIB, requested=3, **common) == 3
    # fp32 needs twice the room per frame.
    fp32 = decode_chunk(free=6 * GIB, **{**common, "dtype": torch.float32})
    assert fp32 <= tight


def test_offload_only_when_the_gpu_is_short_and_overridable() -> None:
    cuda = torch.device("cuda")
    weights = int(4.5 * GIB)
    assert choose_offload(cuda, weights, 70 * GIB) is False
    assert choose_offload(cuda, weights, 6 * GIB) is True
    assert choose_offload(cuda, weights, 6 * GIB, requested=False) is False
    assert choose_offload(torch.device("cpu"), weights, 1 * GIB) is False
