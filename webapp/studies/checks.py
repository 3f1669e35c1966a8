"""The checks a file must pass before it is stored, decided from the file alone and cheapest first.

Parseable Part 10 file (not cut short) -> not a DICOMDIR -> usable UIDs -> CT (or Secondary Capture when the caller
allows it) -> pixel data present -> plausible dimensions, read from the header so a 65,535 x 65,535 claim is refused
before anything is decoded -> JPEG 2000 and lossless JPEG: every frame a complete stream of the header's size
(``codestream``); the other compressed syntaxes: the first frame decodes (JPEG-LS and lossy JPEG through pylibjpeg).
Each failure is a ``Rejected`` with a sentence for the user and the STOW-RS failure code that matches it.
"""
from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from enum import IntEnum
from typing import BinaryIO

import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.encaps import generate_frames
from pydicom.errors import InvalidDicomError
from pydicom.pixels import pixel_array
from pydicom.pixels.decoders.base import DecodeRunner
from pydicom.uid import JPEG2000, UID, JPEG2000Lossless, JPEGLossless, JPEGLosslessSV1

from .codestream import check_codestream, check_jpeg, is_codestream, is_jpeg
from .dicom_tags import CT_SOP_CLASSES, PIXEL_DATA_KEYWORDS, SECONDARY_CAPTURE_IMAGE_STORAGE, IndexedAttributes

# Header limits checked before decoding: the largest CT detectors and multi-frame objects stay far below.
MAX_ROWS_OR_COLUMNS = 8192
MAX_FRAMES = 5000
MAX_DECODED_BYTES = 2 * 1024**3
MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"
SAFE_UID = re.compile(r"^(?!\.+$)[0-9A-Za-z._-]{1,64}$")
UNDEFINED_LENGTH = 0xFFFFFFFF
#: Syntaxes whose frames are checked for structure instead of decoded on ingest (``codestream``): JPEG 2000 and the
#: lossless JPEG processes, CT archives' compressed syntaxes. Lossy JPEG keeps the decode of its first frame (a
#: 12-bit extended-process file of pydicom's test set is well formed and yet no installed decoder reads it).
STRUCTURE_CHECKED: dict[UID, tuple[Callable[[bytes], bool], Callable[[bytes, int, int, int, int], None]]] = {
    JPEG2000Lossless: (is_codestream, check_codestream), JPEG2000: (is_codestream, check_codestream),
    JPEGLossless: (is_jpeg, check_jpeg), JPEGLosslessSV1: (is_jpeg, check_jpeg)}



class FailureReason(IntEnum):
    """STOW-RS Failure Reason (0008,1197) codes (PS3.18 / PS3.4), so STOW can answer in the standard's terms."""

    PROCESSING_FAILURE = 0x0110
    DUPLICATE_SOP_INSTANCE = 0x0111
    SOP_CLASS_NOT_SUPPORTED = 0x0122
    OUT_OF_RESOURCES = 0xA700
    DATASET_DOES_NOT_MATCH = 0xA900
    CANNOT_UNDERSTAND = 0xC000


class Rejected(Exception):
    """A file that will not be stored; ``reason`` is shown to the user as is."""

    def __init__(self, reason: str, failure: FailureReason = FailureReason.CANNOT_UNDERSTAND,
                 partial: pydicom.Dataset | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.failure = failure
        self.partial = partial  # what was read of a cut file: its UIDs still name the failed instance (STOW-RS)

    def identifier(self, keyword: str) -> str:
        """``keyword``'s value in the part that was read, or "" (absent or unreadable itself)."""
        try:
            return str(self.partial.get(keyword, "")) if self.partial is not None else ""
        except Exception:  # a value cut by the truncation: not worth more than no value
            return ""


def read_dataset(file: BinaryIO) -> pydicom.Dataset:
    """Parse a Part 10 file, turning pydicom's many failure modes into one clear rejection."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            ds = pydicom.dcmread(file)
        except InvalidDicomError:
            raise Rejected("not a DICOM file (no DICM prefix or file meta information)") from None
        except (EOFError, OSError, ValueError, KeyError, TypeError, OverflowError, NotImplementedError) as exc:
            raise Rejected(f"truncated or corrupt DICOM file: {exc}") from None
    if any("End of file reached" in str(warning.message) for warning in caught) or _ends_inside_an_element(ds):
        raise Rejected("truncated DICOM file: the data ends inside an element", partial=ds)
    return ds


def _ends_inside_an_element(ds: pydicom.Dataset) -> bool:
    """pydicom keeps whatever it read at end of file; a last value shorter than its declared length means the
    file was cut (an empty data set too: only the file meta arrived)."""
    if len(ds) == 0:
        return True
    last = ds.get_item(list(ds.keys())[-1])
    declared = getattr(last, "length", UNDEFINED_LENGTH)
    return (isinstance(last, RawDataElement) and last.value is not None and declared != UNDEFINED_LENGTH
            and len(last.value) < declared)


def check_dataset(ds: pydicom.Dataset, attrs: IndexedAttributes, *, allow_secondary_capture: bool) -> None:
    """Everything that can be decided from the file alone, cheapest first."""
    if attrs.sop_class_uid == MEDIA_STORAGE_DIRECTORY:
        raise Rejected("DICOMDIR (a file-set index, not an image): import its folder or use import_dicom",
                       FailureReason.SOP_CLASS_NOT_SUPPORTED)
    for keyword in ("sop_instance_uid", "study_instance_uid", "series_instance_uid"):
        if not SAFE_UID.match(getattr(attrs, keyword)):
            raise Rejected(f"missing or malformed {keyword}: {getattr(attrs, keyword)!r}",
                           FailureReason.DATASET_DOES_NOT_MATCH)
    is_ct = attrs.sop_class_uid in CT_SOP_CLASSES and attrs.modality == "CT"
    is_allowed_sc = allow_secondary_capture and attrs.sop_class_uid == SECONDARY_CAPTURE_IMAGE_STORAGE
    if not (is_ct or is_allowed_sc):
        sop_class = UID(attrs.sop_class_uid).name if attrs.sop_class_uid else "none"
        raise Rejected(f"not a CT image (SOP class {sop_class}, modality {attrs.modality or 'none'})",
                       FailureReason.SOP_CLASS_NOT_SUPPORTED)
    if not any(keyword in ds for keyword in PIXEL_DATA_KEYWORDS):
        raise Rejected("no pixel data", FailureReason.DATASET_DOES_NOT_MATCH)
    if attrs.rows <= 0 or attrs.columns <= 0 or attrs.bits_allocated <= 0:
        raise Rejected("Rows, Columns or Bits Allocated missing", FailureReason.DATASET_DOES_NOT_MATCH)
    if (attrs.rows > MAX_ROWS_OR_COLUMNS or attrs.columns > MAX_ROWS_OR_COLUMNS or attrs.number_of_frames > MAX_FRAMES
            or attrs.decoded_frame_bytes * attrs.number_of_frames > MAX_DECODED_BYTES):
        raise Rejected(f"implausible image size {attrs.rows} x {attrs.columns} x {attrs.number_of_frames} frames",
                       FailureReason.DATASET_DOES_NOT_MATCH)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            _check_pixels(ds, attrs)
        except Exception as exc:  # decoders raise anything from ValueError to RuntimeError and plugin errors
            syntax = UID(attrs.transfer_syntax_uid).name if attrs.transfer_syntax_uid else "unknown transfer syntax"
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise Rejected(f"pixel data cannot be decoded ({syntax}): {first_line}") from None


def _check_pixels(ds: pydicom.Dataset, attrs: IndexedAttributes) -> None:
    """Raise when the pixel data cannot be read. Native (uncompressed) data needs only pydicom's checks of the pixel
    description and the buffer length, which is all a decode of it could find wrong, without copying half a
    megabyte per slice on the ingest path. JPEG 2000 and lossless JPEG frames get their structure checked, every
    frame (``codestream``: microseconds, where decoding a JPEG 2000 slice took 24 ms and made ingest of a real JPEG
    2000 series 14 times slower than Orthanc's); a frame that does not start as its syntax's stream (a JP2 file)
    and the other compressed syntaxes have their first frame decoded."""
    syntax = UID(attrs.transfer_syntax_uid or "1.2.840.10008.1.2.1")
    if syntax in STRUCTURE_CHECKED and "PixelData" in ds:
        starts_right, check = STRUCTURE_CHECKED[syntax]
        frames = list(generate_frames(ds.PixelData, number_of_frames=max(1, attrs.number_of_frames)))
        if frames and all(starts_right(frame) for frame in frames):
            for frame in frames:
                check(frame, attrs.rows, attrs.columns, attrs.samples_per_pixel, attrs.bits_allocated)
            return
    if syntax.is_compressed or "PixelData" not in ds:
        pixel_array(ds, index=0)
        return
    runner = DecodeRunner(syntax)
    runner.set_source(ds)
    runner.validate()
