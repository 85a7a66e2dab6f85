"""Streaming multipart uploads: the audio part goes to a temporary file as it arrives.

Every byte is counted against the size limit while it streams in, so an oversized upload is
refused with 413 after at most the limit has been read (a declared Content-Length over the
limit is refused before reading anything); nothing is held in memory beyond one network chunk
and the small text fields. The caller removes the file with ``Upload.remove()`` in a
``finally``, whatever happens.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from runtime.server.errors import APIError, bad_request

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks  # defined for type checkers only

FILE_FIELD = "file"
MAX_FIELD_BYTES = 64 * 1024  # a prompt is at most a few hundred tokens; 64 KiB is plenty
MAX_FIELDS = 32
FORM_OVERHEAD = 1024 * 1024  # body bytes allowed beyond the file: boundaries, headers, fields


@dataclass
class Upload:
    """The parsed form: text fields (every value, in order) and the audio file on disk."""

    fields: dict[str, list[str]] = field(default_factory=dict)
    filename: str | None = None
    path: Path | None = None
    size: int = 0  # bytes of the file part

    def remove(self) -> None:
        """Delete the temporary file; safe to call twice."""
        if self.path is not None:
            self.path.unlink(missing_ok=True)


def too_large(limit: int, what: str) -> APIError:
    return APIError(
        413,
        f"{what} exceeds the upload limit of {limit / 1e6:g} MB",
        param="file",
        code="request_too_large",
    )


class _FormCollector:
    """python-multipart callbacks: fields into ``upload.fields``, the file part to disk."""

    def __init__(self, upload: Upload, max_file_bytes: int, tmp_dir: str | None) -> None:
        self.upload = upload
        self.max_file_bytes = max_file_bytes
        self.tmp_dir = tmp_dir
        self.ended = False
        self._header_name = b""
        self._header_value = b""
        self._disposition = b""
        self._name: str | None = None
        self._value = bytearray()
        self._file: BinaryIO | None = None

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_part_begin": self.on_part_begin,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
            "on_header_field": self.on_header_field,
            "on_header_value": self.on_header_value,
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
            "on_end": self.on_end,
        }

    def on_part_begin(self) -> None:
        self._disposition, self._name, self._value = b"", None, bytearray()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        if self._header_name.strip().lower() == b"content-disposition":
            self._disposition = self._header_value
        self._header_name, self._header_value = b"", b""

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        if b"name" not in options:
            raise bad_request("a multipart part has no name in its Content-Disposition header")
        self._name = options[b"name"].decode("utf-8", "replace")
        if self._name == FILE_FIELD:
            self._open_file(options.get(b"filename", b"").decode("utf-8", "replace"))
        elif b"filename" in options:
            raise bad_request(
                f"unexpected file field {self._name!r}; send the audio as 'file'", param=self._name
            )
        elif sum(len(v) for v in self.upload.fields.values()) >= MAX_FIELDS:
            raise bad_request(f"too many form fields (at most {MAX_FIELDS})")

    def _open_file(self, filename: str) -> None:
        if self.upload.path is not None:
            raise bad_request(
                "more than one 'file' part; send one audio file per request", param=FILE_FIELD
            )
        fd, path = tempfile.mkstemp(prefix="runtime-serve-", suffix=".upload", dir=self.tmp_dir)
        self.upload.path = Path(path)
        self.upload.filename = filename or None
        self._file = os.fdopen(fd, "wb")

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._file is not None:
            self.upload.size += end - start
            if self.upload.size > self.max_file_bytes:
                raise too_large(self.max_file_bytes, "the file")
            self._file.write(data[start:end])
            return
        self._value += data[start:end]
        if len(self._value) > MAX_FIELD_BYTES:
            raise bad_request(
                f"form field {self._name!r} is longer than {MAX_FIELD_BYTES // 1024} KiB",
                param=self._name,
            )

    def on_part_end(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        elif self._name is not None:
            value = self._value.decode("utf-8", "replace")
            self.upload.fields.setdefault(self._name, []).append(value)

    def on_end(self) -> None:
        self.ended = True

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _boundary(request: Request) -> bytes:
    content_type = request.headers.get("content-type", "")
    kind, params = parse_options_header(content_type)
    if kind != b"multipart/form-data":
        raise bad_request(
            f"Content-Type must be multipart/form-data, not {content_type!r}",
            code="invalid_content_type",
        )
    if not params.get(b"boundary"):
        raise bad_request("the multipart Content-Type has no boundary", code="invalid_content_type")
    return params[b"boundary"]


def _check_declared_length(request: Request, limit: int) -> None:
    declared = request.headers.get("content-length")
    if declared is None:
        return  # chunked transfer: counted while streaming
    try:
        length = int(declared)
    except ValueError:
        raise bad_request(f"invalid Content-Length {declared!r}") from None
    if length > limit + FORM_OVERHEAD:
        raise too_large(limit, f"the request body ({length / 1e6:.1f} MB)")


async def read_upload(request: Request, max_file_bytes: int, tmp_dir: str | None = None) -> Upload:
    """Parse the multipart body of ``request``; raise ``APIError`` (400/413) on bad input.

    On any error the partial temporary file is removed before the error propagates."""
    boundary = _boundary(request)
    _check_declared_length(request, max_file_bytes)
    upload = Upload()
    collector = _FormCollector(upload, max_file_bytes, tmp_dir)
    received = 0
    try:
        parser = MultipartParser(boundary, collector.callbacks())
        async for chunk in request.stream():
            received += len(chunk)
            if received > max_file_bytes + FORM_OVERHEAD:
                raise too_large(max_file_bytes, "the request body")
            parser.write(chunk)
        parser.finalize()
        if not collector.ended:
            raise bad_request(
                "the multipart body is truncated (no closing boundary)", code="truncated_body"
            )
    except MultipartParseError as exc:
        collector.close()
        upload.remove()
        raise bad_request(f"malformed multipart body: {exc}") from exc
    except BaseException:
        collector.close()
        upload.remove()
        raise
    return upload
