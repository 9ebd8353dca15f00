"""The PNG encoder behind the TensorBoard images, decoded independently (zlib + struct)."""

from __future__ import annotations

import struct
import zlib

import torch

from filterwatch.integrations.figures import filter_grid
from filterwatch.integrations.raster import encode_png


def _decode(png: bytes) -> tuple[int, int, bytes]:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, {}
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos:pos + 4])
        kind, data = png[pos + 4:pos + 8], png[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", png[pos + 8 + length:pos + 12 + length])
        assert crc == zlib.crc32(kind + data) & 0xFFFFFFFF, kind
        chunks[kind] = data
        pos += 12 + length
    w, h, depth, colour, *_ = struct.unpack(">IIBBBBB", chunks[b"IHDR"])
    assert (depth, colour) == (8, 2) and b"IEND" in chunks
    return w, h, zlib.decompress(chunks[b"IDAT"])


def test_png_round_trips_exactly() -> None:
    image = filter_grid(torch.randn(16, 8, 3, 3))
    rgb = (image.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).contiguous()
    w, h, raw = _decode(encode_png(rgb))
    assert (h, w) == tuple(rgb.shape[:2])
    rows = torch.frombuffer(bytearray(raw), dtype=torch.uint8).reshape(h, 1 + 3 * w)
    assert bool((rows[:, 0] == 0).all())  # filter type 0 on every row
    assert torch.equal(rows[:, 1:].reshape(h, w, 3), rgb)
