"""JPEG 2000 codestreams checked for structure without decoding them (ISO/IEC 15444-1, Annex A).

Why: decoding a 512 x 512 CT slice's codestream costs about 24 ms of CPU, and the ingest checks did it for every
instance, which made storing a real JPEG 2000 series 14 times slower than Orthanc, which decodes nothing on ingest
(``bench/ingest.py --series .../LIDC-IDRI-0002``: 38.6 against 532.6 instances/s). Walking the codestream's markers
takes microseconds and finds what a transfer breaks or a producer gets wrong: bytes that are not a codestream, an
image size, component count or sample precision other than the DICOM header's, a main header without its coding
style or quantization, a tile-part cut short, a missing tile, no end-of-codestream marker. Damage inside the
entropy-coded data it cannot see; the decoders find that when the pixels are first read (the analysis and the viewer
name the file).
"""
from __future__ import annotations

import struct

__all__ = ["CodestreamError", "is_codestream", "check_codestream"]

SOC, SIZ, COD, QCD, SOT, EOC = 0xFF4F, 0xFF51, 0xFF52, 0xFF5C, 0xFF90, 0xFFD9
#: Markers 0xFF30-0xFF3F stand alone; every other main-header marker from 0xFF50 on starts a segment with a length.
_FIRST_SEGMENT_MARKER = 0xFF50


class CodestreamError(ValueError):
    """A codestream whose structure is broken; ``str()`` is a sentence for the user."""


def is_codestream(frame: bytes) -> bool:
    """Whether ``frame`` starts as a raw JPEG 2000 codestream (SOC), not a JP2 file or anything else."""
    return frame[:2] == b"\xff\x4f"


def check_codestream(frame: bytes, rows: int, columns: int, samples: int, bits_allocated: int) -> None:
    """Raise CodestreamError unless ``frame`` is a complete codestream of a ``rows`` x ``columns`` image with
    ``samples`` components of at most ``bits_allocated`` bits (a sign other than the header's is allowed: pydicom
    reconciles it)."""
    end = len(frame)
    if frame[:4] != b"\xff\x4f\xff\x51":
        raise CodestreamError("not a JPEG 2000 codestream (no SOC and SIZ markers at its start)")
    if end < 42:
        raise CodestreamError("cut short in its image and tile size (SIZ) segment")
    lsiz, _, xsiz, ysiz, x_off, y_off, x_tile, y_tile, x_tile_off, y_tile_off, components = struct.unpack_from(
        ">HHIIIIIIIIH", frame, 4)
    if lsiz != 38 + 3 * components or 4 + lsiz > end:
        raise CodestreamError("malformed image and tile size (SIZ) segment")
    if (ysiz - y_off, xsiz - x_off) != (rows, columns):
        raise CodestreamError(f"an image of {ysiz - y_off} x {xsiz - x_off} where the header says {rows} x {columns}")
    if components != samples:
        raise CodestreamError(f"{components} components where the header says {samples} samples per pixel")
    precision = max((frame[42 + 3 * c] & 0x7F) + 1 for c in range(components)) if components else 0
    if not 0 < precision <= bits_allocated:
        raise CodestreamError(f"{precision}-bit samples where the header allocates {bits_allocated} bits")
    if (x_tile == 0 or y_tile == 0 or x_tile_off > x_off or y_tile_off > y_off
            or x_tile_off + x_tile <= x_off or y_tile_off + y_tile <= y_off):
        raise CodestreamError("malformed tiling in the image and tile size (SIZ) segment")
    tiles = -(-(xsiz - x_tile_off) // x_tile) * -(-(ysiz - y_tile_off) // y_tile)

    position, main_header = 4 + lsiz, set()
    while True:
        if position + 4 > end:
            raise CodestreamError("cut short in its main header")
        marker, length = struct.unpack_from(">HH", frame, position)
        if marker == SOT:
            break
        if marker >> 8 != 0xFF or marker < _FIRST_SEGMENT_MARKER or marker == EOC or length < 2:
            raise CodestreamError(f"unexpected bytes {marker:04X} in its main header at byte {position}")
        main_header.add(marker)
        position += 2 + length
    if COD not in main_header or QCD not in main_header:
        raise CodestreamError("its main header lacks the coding style (COD) or quantization (QCD) segment")

    # The end-of-codestream marker closes the data; bytes after it (padding to an even length, null as the standard
    # says or whatever a producer wrote) are not read by a decoder. The marker cannot occur inside the tile-parts'
    # data (their bit stuffing keeps a 0xFF byte from being followed by 0x90 or more), so the last one is the end.
    stop = frame.rfind(b"\xff\xd9", position)
    if stop < 0:
        raise CodestreamError("cut short: no end-of-codestream marker (EOC) after its tile-parts")
    covered = set()
    while position < stop:
        (marker,) = struct.unpack_from(">H", frame, position)
        if marker != SOT or position + 12 > stop:
            raise CodestreamError(f"no tile-part where one should start, at byte {position}")
        lsot, tile, length = struct.unpack_from(">HHI", frame, position + 2)
        if lsot != 10 or tile >= tiles or (length and length < 14):
            raise CodestreamError(f"malformed tile-part header at byte {position}")
        covered.add(tile)
        position = stop if length == 0 else position + length  # 0: the last tile-part runs to the EOC marker
    if position != stop:
        raise CodestreamError("cut short: its last tile-part runs past the end-of-codestream marker")
    if len(covered) != tiles:
        raise CodestreamError(f"{tiles - len(covered)} of its {tiles} tiles missing")
