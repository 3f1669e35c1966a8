"""The streaming multipart/related reader used by STOW-RS, against bodies split at awkward places."""
from __future__ import annotations

import hashlib
import io

import pytest

from webapp.studies.dicomweb.multipart import MultipartError, iter_parts, part_type

BOUNDARY = "b0und4ry"


def body(*parts: bytes, preamble: bytes = b"", epilogue: bytes = b"") -> bytes:
    out = preamble
    for data in parts:
        out += f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode() + data + b"\r\n"
    return out + f"--{BOUNDARY}--\r\n".encode() + epilogue


@pytest.mark.parametrize("chunk_size", [1, 7, 64, 65536])
def test_parts_come_out_byte_exact_whatever_the_read_size(chunk_size):
    payloads = [b"\r\n--b0und4r" * 3 + bytes(range(256)), b"", b"x" * 5000]  # near-boundary bytes inside data
    parts = list(iter_parts(io.BytesIO(body(*payloads, preamble=b"ignored\r\n", epilogue=b"tail")), BOUNDARY,
                            chunk_size=chunk_size))
    assert [p.body.file.read() for p in parts] == payloads
    assert parts[0].content_type == "application/dicom"
    assert parts[2].body.sha256 == hashlib.sha256(payloads[2]).hexdigest() and parts[2].body.size == 5000


@pytest.mark.parametrize(
    "data",
    [b"no boundary here", body(b"abc")[:-20], f"--{BOUNDARY}\r\nContent-Type: x".encode()],
    ids=["no-boundary", "unterminated", "cut-in-headers"],
)
def test_malformed_bodies_raise(data):
    with pytest.raises(MultipartError):
        list(iter_parts(io.BytesIO(data), BOUNDARY))


def test_accept_negotiation():
    assert part_type('multipart/related; type="application/dicom"', ("application/dicom",)) == "application/dicom"
    assert part_type("", ("application/dicom",)) == "application/dicom"
    assert part_type("multipart/related; type=application/octet-stream; transfer-syntax=*",
                     ("application/octet-stream",)) == "application/octet-stream"
    assert part_type('multipart/related; type="*/*"', ("application/octet-stream",)) == "application/octet-stream"
    assert part_type("multipart/related; type=application/*", ("application/dicom",)) == "application/dicom"
    with pytest.raises(Exception, match="part type"):
        part_type('multipart/related; type="image/jpeg"', ("application/dicom",))
