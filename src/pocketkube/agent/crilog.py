"""The CRI container log format, read as the kubelet reads it for `kubectl logs` (pure, no I/O
beyond a given file object).

A CRI runtime (containerd) writes each piece of a container's output as one file line:
`<RFC3339Nano timestamp> <stdout|stderr> <P|F> <payload>\n`. A line longer than the runtime's
buffer (16 KiB in containerd) is split into P(artial) pieces ended by an F(ull) one; the
payload of a P piece has no newline of its own, an F piece's newline is the line's. Reading
strips the prefix and joins the pieces; `--timestamps` prefixes each joined line with its first
piece's timestamp (Go's RFC3339Nano: trailing zeros of the fraction trimmed); `--since` drops
pieces older than the given time. Mirrors pkg/kubelet/kuberuntime/logs (parseCRILog, ReadLogs).
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from typing import BinaryIO

STDOUT, STDERR = b"stdout", b"stderr"
PARTIAL, FULL = b"P", b"F"
_BLOCK = 64 * 1024
_HEADER = 96  # enough bytes of a line to hold its timestamp, stream and tag
_TIMESTAMP = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})$")


@dataclass(frozen=True)
class Timestamp:
    ns: int  # since the epoch, for --since
    text: str  # as Go's time.Format(RFC3339Nano) prints it

    @property
    def encoded(self) -> bytes:
        return self.text.encode()


@dataclass(frozen=True)
class Piece:
    """One file line of a CRI log."""

    timestamp: Timestamp
    stream: bytes
    partial: bool
    content: bytes  # the payload; ends with the newline for an F piece that had one


def parse_timestamp(text: str) -> Timestamp | None:
    """An RFC 3339 timestamp with up to nanoseconds and any offset; None when it is not one."""
    m = _TIMESTAMP.match(text)
    if m is None:
        return None
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    fraction, zone = m.group(7) or "", m.group(8)
    try:
        seconds = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))
    except (ValueError, OverflowError):
        return None
    if not (1 <= month <= 12 and 1 <= day <= 31 and hour < 24 and minute < 60 and second < 61):
        return None
    offset = 0
    if zone != "Z":
        sign = -1 if zone[0] == "-" else 1
        offset = sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    ns = (seconds - offset) * 1_000_000_000 + int(fraction.ljust(9, "0") or 0)
    trimmed = fraction.rstrip("0")
    out_zone = "Z" if offset == 0 else zone
    text_out = f"{text[:19]}{'.' + trimmed if trimmed else ''}{out_zone}"
    return Timestamp(ns, text_out)


def parse_line(line: bytes) -> Piece | None:
    """parseCRILog: one file line (with or without its newline); None when it is not CRI."""
    parts = line.split(b" ", 3)
    if len(parts) < 4:
        # `<ts> <stream> <tag>` with an empty payload and no separator is still a piece.
        if len(parts) == 3 and parts[2].rstrip(b"\n") in (PARTIAL, FULL):
            parts = [*parts[:2], parts[2].rstrip(b"\n"), b"\n" if line.endswith(b"\n") else b""]
        else:
            return None
    ts_raw, stream, tag, content = parts
    try:
        timestamp = parse_timestamp(ts_raw.decode("ascii"))
    except UnicodeDecodeError:
        return None
    if timestamp is None or stream not in (STDOUT, STDERR):
        return None
    partial = tag.split(b":", 1)[0] == PARTIAL  # tags are `:`-separated, the first says P or F
    if partial and content.endswith(b"\n"):
        content = content[:-1]
    return Piece(timestamp, stream, partial, content)


class CriDecoder:
    """Turns CRI log bytes, fed in any chunks, into what `kubectl logs` prints.

    An unfinished file line (no newline yet: the runtime is writing it) is kept until the rest
    arrives; `flush()` decodes it anyway once no more is coming."""

    def __init__(self, timestamps: bool = False, since_ns: int | None = None) -> None:
        self.timestamps = timestamps
        self.since_ns = since_ns
        self._pending = b""
        self._at_line_start = True

    def feed(self, data: bytes) -> bytes:
        data = self._pending + data
        end = data.rfind(b"\n")
        if end < 0:
            self._pending = data
            return b""
        self._pending = data[end + 1:]
        return b"".join(self._decode(line) for line in data[:end + 1].splitlines(keepends=True))

    def flush(self) -> bytes:
        line, self._pending = self._pending, b""
        return self._decode(line) if line else b""

    def _decode(self, line: bytes) -> bytes:
        piece = parse_line(line)
        if piece is None:
            return b""  # not a CRI line: skipped, as the kubelet does
        out = b""
        if self.since_ns is None or piece.timestamp.ns >= self.since_ns:
            out = piece.content
            if self.timestamps and self._at_line_start:
                out = piece.timestamp.encoded + b" " + out
        self._at_line_start = piece.content.endswith(b"\n") if piece.content else True
        return out


def _line_starts_reversed(f: BinaryIO, size: int):
    """The offset of every file line, last line first (a trailing newline starts no line)."""
    pos = size
    end = size - 1 if size else 0  # the final newline ends the last line
    while pos > 0:
        step = min(_BLOCK, pos)
        f.seek(pos - step)
        block = f.read(step)
        i = min(len(block), end - (pos - step))
        while True:
            i = block.rfind(b"\n", 0, i)
            if i < 0:
                break
            yield pos - step + i + 1
        end = pos - step
        pos -= step
    if size:
        yield 0


def _is_full(f: BinaryIO, start: int) -> bool:
    f.seek(start)
    parts = f.read(_HEADER).split(b" ", 3)
    return len(parts) < 3 or parts[2].split(b":", 1)[0].rstrip(b"\n") != PARTIAL


def tail_offset(f: BinaryIO, lines: int) -> int:
    """Where the last `lines` lines of a CRI log start, counting joined lines (P pieces up to
    their F piece are one line); the end of the file for 0."""
    f.seek(0, 2)
    size = f.tell()
    if lines <= 0:
        return size
    count = 0
    following: int | None = None  # the start of the file line after the current one
    for start in _line_starts_reversed(f, size):
        if following is not None and _is_full(f, start):
            count += 1
            if count == lines:
                return following
        following = start
    return 0
