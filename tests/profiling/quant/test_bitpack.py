"""Bit packing is bit-exact for every width and element count."""

from __future__ import annotations

import numpy as np
import pytest

from profiling.quant import bitpack
from profiling.quant.bitpack import pack_bits, unpack_bits


@pytest.mark.parametrize("bits", [2, 3, 4, 5, 6, 8])
@pytest.mark.parametrize("numel", [0, 1, 7, 13, 1000, 4097])
def test_round_trip(bits: int, numel: int) -> None:
    rng = np.random.default_rng(bits * 1000 + numel)
    values = rng.integers(0, 2**bits, size=numel, dtype=np.uint8)
    packed = pack_bits(values, bits)
    assert packed.size == (numel * bits + 7) // 8
    assert np.array_equal(unpack_bits(packed, bits, numel), values)


def test_little_endian_layout() -> None:
    # 3-bit values 5 (101), 3 (011), 7 (111): stream LSB-first 1,0,1, 1,1,0, 1,1,1
    packed = pack_bits(np.array([5, 3, 7], dtype=np.uint8), 3)
    assert packed.tolist() == [0b11011101, 0b1]


def test_chunk_boundaries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bitpack, "_CHUNK", 16)
    values = np.random.default_rng(0).integers(0, 32, size=101, dtype=np.uint8)
    assert np.array_equal(unpack_bits(pack_bits(values, 5), 5, 101), values)


def test_rejects_overflow_and_bad_sizes() -> None:
    with pytest.raises(ValueError, match="does not fit"):
        pack_bits(np.array([4], dtype=np.uint8), 2)
    with pytest.raises(ValueError, match="bits"):
        pack_bits(np.array([1], dtype=np.uint8), 9)
    with pytest.raises(ValueError, match="cannot hold"):
        unpack_bits(np.zeros(3, dtype=np.uint8), 4, 7)
