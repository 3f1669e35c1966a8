"""``multipart/related`` both ways: streamed out for WADO-RS, parsed incrementally for STOW-RS.

Neither direction holds a whole study in memory: responses are generators over storage files, and request
bodies are cut into parts as they arrive, each part spooled (and hashed) on its own.
"""
from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from django.http import StreamingHttpResponse
from django.utils.http import parse_header_parameters
from rest_framework.exceptions import NotAcceptable

from ..ingest import Spool, Spooled

CRLF = b"\r\n"
MAX_PART_HEADER_BYTES = 16 * 1024
BODY_BUFFER_BYTES = 8 * 1024 * 1024  # a part up to this size is copied out of the read buffer once, whole


class MultipartError(ValueError):
    """The body is not well-formed multipart; the message says where it broke."""


# -- negotiation -----------------------------------------------------------------------------------------------

def part_type(accept: str, offered: tuple[str, ...]) -> str:
    """The part media type the client's Accept header asks for, among ``offered`` (the first is the default).

    ``multipart/related; type="application/dicom"`` names the part type; a bare part type or a wildcard
    (``*/*``, ``application/*``, as dicomweb-client sends for frames) also selects it. Raises 406 when nothing
    offered is acceptable.
    """
    for media_range in (accept or "*/*").split(","):
        main, params = parse_header_parameters(media_range.strip())
        main = main.lower()
        if main in ("*/*", "multipart/*"):
            return offered[0]
        wanted = params.get("type", offered[0]).lower() if main == "multipart/related" else main
        for candidate in offered:
            if wanted in (candidate, "*/*") or (wanted.endswith("/*") and candidate.startswith(wanted[:-1])):
                return candidate
    raise NotAcceptable(f"this resource is served as multipart/related with part type {' or '.join(offered)}")


# -- writing ---------------------------------------------------------------------------------------------------

@dataclass
class Part:
    content_type: str
    chunks: Iterable[bytes]
    location: str = ""


def file_chunks(file: BinaryIO, size: int = 256 * 1024) -> Iterator[bytes]:
    """Yield a file's bytes and close it, even when the client disconnects mid-stream."""
    with file:
        while chunk := file.read(size):
            yield chunk


def multipart_response(parts: Iterable[Part], part_content_type: str) -> StreamingHttpResponse:
    boundary = uuid.uuid4().hex

    def body() -> Iterator[bytes]:
        for part in parts:
            headers = f"--{boundary}\r\nContent-Type: {part.content_type}\r\n"
            if part.location:
                headers += f"Content-Location: {part.location}\r\n"
            yield (headers + "\r\n").encode()
            yield from part.chunks
            yield CRLF
        yield f"--{boundary}--\r\n".encode()

    content_type = f'multipart/related; type="{part_content_type}"; boundary={boundary}'
    return StreamingHttpResponse(body(), content_type=content_type)


# -- reading ---------------------------------------------------------------------------------------------------

@dataclass
class ReceivedPart:
    headers: dict[str, str]  # lower-cased names
    body: Spooled

    @property
    def content_type(self) -> str:
        return parse_header_parameters(self.headers.get("content-type", ""))[0].lower()


class _Buffer:
    """The body's bytes read but not yet consumed. Consuming drops them from the front of the bytearray, which
    CPython does by moving its start, not the bytes behind it; a part is copied out of it once, whole."""

    def __init__(self, stream: BinaryIO, chunk_size: int) -> None:
        self.stream, self.chunk_size, self.data = stream, chunk_size, bytearray()

    def fill(self) -> bool:
        chunk = self.stream.read(self.chunk_size)
        if not chunk:
            return False
        self.data += chunk
        return True

    def find(self, marker: bytes, limit: int | None = None) -> int | None:
        """Index of ``marker``, reading on until it arrives (None at end of stream), or until more than ``limit``
        bytes are buffered (-1: the caller consumes some and asks again)."""
        start = 0
        while (index := self.data.find(marker, start)) < 0:
            if limit is not None and len(self.data) > limit:
                return -1
            start = max(0, len(self.data) - len(marker) + 1)  # a marker may straddle two reads
            if not self.fill():
                return None
        return index

    def take(self, count: int, skip: int = 0) -> bytes:
        """Consume the first ``count`` bytes and return them, then drop ``skip`` more (a marker)."""
        with memoryview(self.data) as view:
            head = bytes(view[:count])
        del self.data[:count + skip]
        return head

    def take_until(self, marker: bytes, limit: int | None = None) -> bytes | None:
        """Consume and return the bytes before ``marker`` (dropping the marker); None at end of stream."""
        index = self.find(marker, limit)
        if index is not None and index < 0:
            raise MultipartError("part headers too long")
        return None if index is None else self.take(index, len(marker))

    def need(self, count: int) -> bool:
        while len(self.data) < count:
            if not self.fill():
                return False
        return True


def iter_parts(stream: BinaryIO, boundary: str, chunk_size: int = 1024 * 1024) -> Iterator[ReceivedPart]:
    """Yield each body part of a multipart stream, complete, spooled and hashed."""
    delimiter = CRLF + b"--" + boundary.encode("latin-1")
    buffer = _Buffer(stream, chunk_size)
    buffer.data += CRLF  # the first delimiter may open the body, without the CRLF the others follow
    if buffer.take_until(delimiter) is None:
        raise MultipartError("the body does not contain the boundary given in Content-Type")
    while True:
        if not buffer.need(2):
            raise MultipartError("the body ends without the closing boundary")
        if buffer.data.startswith(b"--"):
            return  # close delimiter; anything after it is epilogue
        if buffer.take_until(CRLF, MAX_PART_HEADER_BYTES) is None:  # rest of the delimiter line
            raise MultipartError("the body ends inside a boundary line")
        yield ReceivedPart(_read_headers(buffer), _read_body(buffer, delimiter))


def _read_headers(buffer: _Buffer) -> dict[str, str]:
    if not buffer.need(2):
        raise MultipartError("the body ends inside part headers")
    if buffer.data.startswith(CRLF):  # a part without headers
        del buffer.data[:2]
        return {}
    block = buffer.take_until(CRLF + CRLF, MAX_PART_HEADER_BYTES)
    if block is None:
        raise MultipartError("the body ends inside part headers")
    headers = {}
    for line in block.decode("latin-1").split("\r\n"):
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return headers


def _read_body(buffer: _Buffer, delimiter: bytes) -> Spooled:
    """The part up to ``delimiter``: buffered whole while it fits in ``BODY_BUFFER_BYTES`` (copied out once),
    handed to the spool in pieces of that size when it is larger."""
    target = Spool()
    try:
        while (index := buffer.find(delimiter, BODY_BUFFER_BYTES)) is not None and index < 0:
            target.write(buffer.take(len(buffer.data) - len(delimiter) + 1))  # the rest may start the delimiter
        if index is None:
            raise MultipartError("the body ends inside a part")
        target.write(buffer.take(index, len(delimiter)))
    except BaseException:  # a broken body, a reader that refuses to go on (size limit), a client gone
        target.discard()
        raise
    return target.finish()
