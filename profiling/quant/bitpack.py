"""Bit packing: ``numel`` unsigned ints of ``bits`` bits back to back in ceil(numel·bits/8) bytes.

Bit order is little-endian throughout: value i occupies stream bits [i·bits, (i+1)·bits), its
least significant bit first, and stream bit j is bit (j mod 8) of byte j // 8 (``np.packbits``
with ``bitorder="little"``). Work is chunked so that memory stays bounded on large layers.
"""

from __future__ import annotations

import numpy as np

__all__ = ["pack_bits", "unpack_bits"]

_CHUNK = 1 << 20  # values per chunk; a multiple of 8, so every chunk ends on a byte boundary


def _check(bits: int) -> None:
    if not 1 <= bits <= 8:
        raise ValueError(f"bits must be in 1..8, got {bits}")


def pack_bits(values: np.ndarray, bits: int) -> np.ndarray:
    """Pack unsigned ints (< 2^bits) into a uint8 array of ceil(numel·bits/8) bytes."""
    _check(bits)
    flat = np.ascontiguousarray(values, dtype=np.uint8).reshape(-1)
    if flat.size and int(flat.max()) >= 1 << bits:
        raise ValueError(f"value {int(flat.max())} does not fit in {bits} bits")
    shifts = np.arange(bits, dtype=np.uint8)
    parts = []
    for start in range(0, flat.size, _CHUNK):
        chunk = flat[start : start + _CHUNK]
        stream = ((chunk[:, None] >> shifts) & 1).astype(np.uint8).reshape(-1)
        parts.append(np.packbits(stream, bitorder="little"))
    out = np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint8)
    assert out.size == (flat.size * bits + 7) // 8
    return out


def unpack_bits(packed: np.ndarray, bits: int, numel: int) -> np.ndarray:
    """Inverse of ``pack_bits``: ``numel`` uint8 values."""
    _check(bits)
    data = np.ascontiguousarray(packed, dtype=np.uint8).reshape(-1)
    if data.size != (numel * bits + 7) // 8:
        raise ValueError(f"{data.size} bytes cannot hold exactly {numel} values of {bits} bits")
    weights = (1 << np.arange(bits, dtype=np.uint16)).astype(np.uint16)
    out = np.empty(numel, dtype=np.uint8)
    step = _CHUNK * bits // 8  # bytes per chunk
    for i, start in enumerate(range(0, numel, _CHUNK)):
        count = min(_CHUNK, numel - start)
        stream = np.unpackbits(data[i * step : i * step + step], bitorder="little")
        vals = stream[: count * bits].reshape(count, bits).astype(np.uint16) @ weights
        out[start : start + count] = vals.astype(np.uint8)
    return out
