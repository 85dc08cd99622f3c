"""Hostile images built in memory for the upload tests of several pages."""

import struct
import zlib


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)


def png_bomb(side: int, bit_depth: int = 1) -> bytes:
    """A valid grayscale PNG of side×side black pixels: a few kB on disk, huge once decoded."""
    compressor = zlib.compressobj(9)
    row = b"\x00" * (side * bit_depth // 8 + 1)
    data = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    header = struct.pack(">IIBBBBB", side, side, bit_depth, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", data) + png_chunk(b"IEND", b"")
