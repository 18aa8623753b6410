"""A pure-Python reader and writer for HFAiLab's FFRecord files (no libaio, no compiled code).

Layout (little-endian), as written by HFAiLab/ffrecord `ffrecord/src/writer.cpp` and
`ffrecord/fileio.py`:

    offset 0            uint32     header_crc   CRC32 of the bytes [4, 12 + 12*N): N, the sample
                                                CRCs and the offsets (not of itself, not of data)
    offset 4            uint64     N            number of samples
    offset 12           uint32[N]  sample_crcs  CRC32 of each sample's bytes
    offset 12 + 4N      int64[N]   offsets      absolute file offset of each sample
    offset 12 + 12N     payloads   sample i spans [offsets[i], offsets[i+1]); the last one runs to
                                   the end of the file

CRC32 is zlib's (the same polynomial and initial value as `zlib.crc32`). The payloads are opaque
bytes to this module; what they mean (image bytes, or a pickle) is decided in `sources.py`.
A broken header makes the whole file unusable and raises `FFRecordError` naming the file; a sample
whose CRC does not match is reported by `iter_samples` and the others are still read.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

_PREFIX = struct.Struct("<IQ")  # header_crc, N
_CRC_DTYPE = np.dtype("<u4")
_OFFSET_DTYPE = np.dtype("<i8")
_BYTES_PER_SAMPLE_IN_HEADER = _CRC_DTYPE.itemsize + _OFFSET_DTYPE.itemsize


class FFRecordError(ValueError):
    """An FFRecord file whose header cannot be trusted; the message names the file."""


@dataclass(frozen=True)
class FFRecordSample:
    """One payload, or the reason it could not be read (then `data` is None)."""

    index: int
    data: bytes | None
    error: str | None = None


def header_size(n: int) -> int:
    return _PREFIX.size + _BYTES_PER_SAMPLE_IN_HEADER * n


class FFRecordReader:
    """Random access to the samples of one FFRecord file, checking every CRC.

    The header is read and verified when the reader is opened, so a file that is not FFRecord,
    is truncated inside its header, or has offsets pointing outside the file fails at once.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._file = open(self.path, "rb")  # noqa: SIM115 - closed by close()/__exit__
        try:
            self._read_header()
        except BaseException:
            self._file.close()
            raise

    def _fail(self, what: str) -> FFRecordError:
        return FFRecordError(f"{self.path}: not a valid FFRecord file: {what}")

    def _read_header(self) -> None:
        file_size = os.fstat(self._file.fileno()).st_size
        prefix = self._file.read(_PREFIX.size)
        if len(prefix) < _PREFIX.size:
            raise self._fail(f"only {file_size} bytes, shorter than the 12-byte header")
        header_crc, n = _PREFIX.unpack(prefix)
        # Check N against the file size before allocating anything: a garbage N would otherwise
        # ask for terabytes.
        if header_size(n) > file_size:
            raise self._fail(f"header claims {n} samples, which do not fit in {file_size} bytes")
        table = self._file.read(_BYTES_PER_SAMPLE_IN_HEADER * n)
        actual_crc = zlib.crc32(table, zlib.crc32(prefix[4:]))
        if actual_crc != header_crc:
            raise self._fail(f"header CRC mismatch (stored {header_crc:#010x}, computed {actual_crc:#010x})")
        self.sample_crcs = np.frombuffer(table, dtype=_CRC_DTYPE, count=n)
        offsets = np.frombuffer(table, dtype=_OFFSET_DTYPE, offset=_CRC_DTYPE.itemsize * n, count=n)
        # ends[i] = where sample i stops: the next offset, or the end of the file for the last.
        ends = np.append(offsets[1:], file_size).astype(np.int64)
        if n and (offsets[0] < header_size(n) or np.any(ends < offsets) or ends[-1] > file_size):
            raise self._fail("sample offsets are not increasing within the file")
        self.offsets, self.ends = offsets.astype(np.int64), ends

    def __len__(self) -> int:
        return len(self.offsets)

    def read(self, index: int) -> bytes:
        """Sample `index`'s bytes; raises `FFRecordError` when its CRC does not match."""
        if not 0 <= index < len(self):
            raise IndexError(f"{self.path}: sample {index} out of range (0..{len(self) - 1})")
        start, end = int(self.offsets[index]), int(self.ends[index])
        self._file.seek(start)
        data = self._file.read(end - start)
        if len(data) != end - start:
            raise FFRecordError(f"{self.path}: sample {index}: file ended early")
        if zlib.crc32(data) != int(self.sample_crcs[index]):
            raise FFRecordError(f"{self.path}: sample {index}: CRC mismatch (data corrupted)")
        return data

    def iter_samples(self) -> Iterator[FFRecordSample]:
        """Every sample in order; a corrupted one comes back with `error` set instead of raising."""
        for index in range(len(self)):
            try:
                yield FFRecordSample(index, self.read(index))
            except FFRecordError as err:
                yield FFRecordSample(index, None, str(err).removeprefix(f"{self.path}: "))

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> FFRecordReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def write_ffrecord(path: str | os.PathLike, payloads: Iterable[bytes]) -> int:
    """Write `payloads` as one FFRecord file readable by HFAiLab's reader; returns N.

    HFAiLab's writer needs N up front because the header precedes the data; here the payloads
    are streamed to the file first and the header is written last into the space left for it,
    so N need not be known, only the offsets and CRCs (12 bytes per sample) are held in memory.
    """
    path = Path(path)
    crcs: list[int] = []
    lengths: list[int] = []
    tmp = path.with_name(path.name + ".partial")
    with open(tmp, "wb") as body:
        for payload in payloads:
            payload = bytes(payload)
            body.write(payload)
            crcs.append(zlib.crc32(payload))
            lengths.append(len(payload))
    n = len(crcs)
    # sample i starts after the header and the i payloads before it
    offsets = header_size(n) + np.cumsum([0] + lengths, dtype=np.int64)[:n]
    table = np.asarray(crcs, dtype=_CRC_DTYPE).tobytes() + np.asarray(offsets, dtype=_OFFSET_DTYPE).tobytes()
    n_bytes = struct.pack("<Q", n)
    header_crc = zlib.crc32(table, zlib.crc32(n_bytes))
    try:
        with open(path, "wb") as out, open(tmp, "rb") as body:
            out.write(struct.pack("<I", header_crc) + n_bytes + table)
            while chunk := body.read(1 << 20):
                out.write(chunk)
    finally:
        tmp.unlink(missing_ok=True)
    return n
