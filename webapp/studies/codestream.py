"""Compressed frames checked for structure without decoding them: JPEG 2000 codestreams (ISO/IEC 15444-1, Annex
A) and JPEG streams (ITU-T T.81: baseline, extended and lossless, the CT archives' other common syntax).

Why: decoding a 512 x 512 CT slice costs about 24 ms of CPU for JPEG 2000 and 9 ms for lossless JPEG, and the
ingest checks did it for every instance, which made storing a real JPEG 2000 series 14 times slower than Orthanc,
which decodes nothing on ingest (``bench/ingest.py --series .../LIDC-IDRI-0002``: 38.6 against 532.6 instances/s).
Walking the markers takes microseconds and finds what a transfer breaks or a producer gets wrong: bytes that are not
such a stream, an image size, component count or sample precision other than the DICOM header's, a missing header
segment, data cut short, a missing tile, no end marker. Damage inside the entropy-coded data it cannot see; the
decoders find that when the pixels are first read (the analysis and the viewer name the file).
"""
from __future__ import annotations

import struct

__all__ = ["CodestreamError", "is_codestream", "check_codestream", "is_jpeg", "check_jpeg"]

SOC, SIZ, COD, QCD, SOT, EOC = 0xFF4F, 0xFF51, 0xFF52, 0xFF5C, 0xFF90, 0xFFD9
#: Markers 0xFF30-0xFF3F stand alone; every other main-header marker from 0xFF50 on starts a segment with a length.
_FIRST_SEGMENT_MARKER = 0xFF50


class CodestreamError(ValueError):
    """A compressed frame whose structure is broken; ``str()`` is a sentence for the user."""


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


#: Start-of-frame markers of T.81 (0xC4 DHT, 0xC8 JPG and 0xCC DAC are not frames).
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_SOS, _EOI = 0xDA, 0xD9


def is_jpeg(frame: bytes) -> bool:
    """Whether ``frame`` starts as a JPEG stream (SOI)."""
    return frame[:2] == b"\xff\xd8"


def check_jpeg(frame: bytes, rows: int, columns: int, samples: int, bits_allocated: int) -> None:
    """Raise CodestreamError unless ``frame`` is a complete JPEG stream with one frame header of a ``rows`` x
    ``columns`` image (or rows given later, by a DNL segment) with ``samples`` components of at most
    ``bits_allocated`` bits, at least one scan, and the end-of-image marker after its last segment."""
    if not is_jpeg(frame):
        raise CodestreamError("not a JPEG stream (no SOI marker at its start)")
    # In entropy-coded data a 0xFF byte is followed by 0x00 or a restart marker, so the last EOI marker is the end;
    # bytes after it are padding.
    stop = frame.rfind(b"\xff\xd9", 2)
    if stop < 0:
        raise CodestreamError("cut short: no end-of-image marker (EOI)")
    position, frames, scans = 2, 0, 0
    while position < stop:
        if frame[position] != 0xFF:
            raise CodestreamError(f"unexpected bytes where a marker should be, at byte {position}")
        marker = frame[position + 1]
        if marker == 0xFF:  # fill byte before a marker
            position += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # TEM and restart markers stand alone
            position += 2
            continue
        if position + 4 > stop:
            raise CodestreamError(f"cut short in a segment at byte {position}")
        (length,) = struct.unpack_from(">H", frame, position + 2)
        if length < 2 or position + 2 + length > stop:
            raise CodestreamError(f"cut short or malformed segment {0xFF00 | marker:04X} at byte {position}")
        if marker in _SOF:
            if length < 8:
                raise CodestreamError("malformed frame header (SOF)")
            precision, lines, width, components = struct.unpack_from(">BHHB", frame, position + 4)
            if (lines and lines != rows) or width != columns:
                raise CodestreamError(f"an image of {lines} x {width} where the header says {rows} x {columns}")
            if components != samples:
                raise CodestreamError(f"{components} components where the header says {samples} samples per pixel")
            if not 0 < precision <= bits_allocated:
                raise CodestreamError(f"{precision}-bit samples where the header allocates {bits_allocated} bits")
            frames += 1
        position += 2 + length
        if marker == _SOS:
            scans += 1
            position = _after_entropy_data(frame, position, stop)
    if frames != 1 or scans == 0:
        raise CodestreamError("no frame header (SOF) or no scan (SOS)" if not (frames and scans)
                              else f"{frames} frame headers (SOF) in one frame")


def _after_entropy_data(frame: bytes, position: int, stop: int) -> int:
    """Where the entropy-coded data starting at ``position`` ends: the next 0xFF that is neither a stuffed 0xFF 0x00
    nor a restart marker (``stop`` when there is none before the end)."""
    while True:
        position = frame.find(b"\xff", position, stop)
        if position < 0:
            return stop
        following = frame[position + 1]
        if following == 0x00 or 0xD0 <= following <= 0xD7:
            position += 2
            continue
        return position
