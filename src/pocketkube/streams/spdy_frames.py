"""SPDY/3.1 frames: encoding, incremental parsing and the zlib-compressed header blocks.

Pure and synchronous (no I/O, no asyncio): `FrameParser.feed(bytes)` yields frame objects,
the `encode_*` functions return bytes. The peers that matter are Go's (moby/spdystream, used
by kubectl, the kubelet and containerd's CRI streaming server), so the encoder stays within
what their reader accepts: lower-case header names, no hop-by-hop headers, GOAWAY and
WINDOW_UPDATE exactly 8 bytes long with no flags.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

VERSION = 3

SYN_STREAM = 1
SYN_REPLY = 2
RST_STREAM = 3
SETTINGS = 4
PING = 6
GOAWAY = 7
HEADERS = 8
WINDOW_UPDATE = 9

FLAG_FIN = 0x01
FLAG_UNIDIRECTIONAL = 0x02

# RST_STREAM status codes
PROTOCOL_ERROR = 1
INVALID_STREAM = 2
REFUSED_STREAM = 3
UNSUPPORTED_VERSION = 4
CANCEL = 5
INTERNAL_ERROR = 6
FLOW_CONTROL_ERROR = 7
STREAM_IN_USE = 8
STREAM_ALREADY_CLOSED = 9
FRAME_TOO_LARGE = 11

# GOAWAY status codes
GOAWAY_OK = 0
GOAWAY_PROTOCOL_ERROR = 1
GOAWAY_INTERNAL_ERROR = 2

SETTINGS_MAX_CONCURRENT_STREAMS = 4
SETTINGS_INITIAL_WINDOW_SIZE = 7

MAX_LENGTH = (1 << 24) - 1  # 24-bit length field
MAX_STREAM_ID = (1 << 31) - 1
DEFAULT_WINDOW = 64 * 1024  # SPDY/3.1's initial stream and session window
MAX_HEADER_BLOCK = 256 * 1024  # a decompressed header block larger than this is an attack

# Hop-by-hop headers Go's reader rejects in a SYN_STREAM/SYN_REPLY (a frame error there kills
# the whole connection), so they are never encoded.
_FORBIDDEN_HEADERS = frozenset({"connection", "host", "keep-alive", "proxy-connection",
                                "transfer-encoding"})


def _header_dictionary() -> bytes:
    """The zlib dictionary of SPDY/3 (draft-mbelshe-httpbis-spdy-00 §2.6.10.1): length-prefixed
    header names and words, then common values. Its Adler-32 (0xe3c6a7c2) is on the wire as
    the zlib stream's dictionary id, so it must be byte-exact."""
    words = (
        "options head post put delete trace accept accept-charset accept-encoding "
        "accept-language accept-ranges age allow authorization cache-control connection "
        "content-base content-encoding content-language content-length content-location "
        "content-md5 content-range content-type date etag expect expires from host if-match "
        "if-modified-since if-none-match if-range if-unmodified-since last-modified location "
        "max-forwards pragma proxy-authenticate proxy-authorization range referer retry-after "
        "server te trailer transfer-encoding upgrade user-agent vary via warning "
        "www-authenticate method get status"
    ).split() + ["200 OK", "version", "HTTP/1.1", "url", "public", "set-cookie", "keep-alive",
                 "origin"]
    tail = (
        "100101201202205206300302303304305306307402405406407408409410411412413414415416417"
        "502504505203 Non-Authoritative Information204 No Content301 Moved Permanently"
        "400 Bad Request401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error"
        "501 Not Implemented503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct "
        "Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,"
        "image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,"
        "text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8"
        "charset=iso-8859-1,utf-,*,enq=0."
    )
    out = bytearray()
    for word in words:
        out += struct.pack(">I", len(word)) + word.encode()
    return bytes(out) + tail.encode()


HEADER_DICTIONARY = _header_dictionary()


class SpdyProtocolError(Exception):
    """The byte stream is not valid SPDY/3.1: the session must end (GOAWAY PROTOCOL_ERROR)."""


# --- frames -------------------------------------------------------------------------------


@dataclass
class DataFrame:
    stream_id: int
    data: bytes
    fin: bool = False


@dataclass
class SynStream:
    stream_id: int
    headers: dict[str, str]
    fin: bool = False
    unidirectional: bool = False
    associated_id: int = 0
    priority: int = 0


@dataclass
class SynReply:
    stream_id: int
    headers: dict[str, str]
    fin: bool = False


@dataclass
class Headers:
    stream_id: int
    headers: dict[str, str]
    fin: bool = False


@dataclass
class RstStream:
    stream_id: int
    status: int


@dataclass
class Settings:
    values: dict[int, int] = field(default_factory=dict)
    clear: bool = False


@dataclass
class Ping:
    id: int


@dataclass
class GoAway:
    last_good_id: int
    status: int = GOAWAY_OK


@dataclass
class WindowUpdate:
    stream_id: int  # 0 = the session's window (SPDY/3.1)
    delta: int


@dataclass
class UnknownControl:
    """A control frame type we do not know: SPDY says to ignore it."""

    type: int


Frame = (DataFrame | SynStream | SynReply | Headers | RstStream | Settings | Ping | GoAway
         | WindowUpdate | UnknownControl)


# --- header blocks --------------------------------------------------------------------------


class HeaderEncoder:
    """One per direction of a session: the header blocks of a session are one zlib stream,
    each block ended with a sync flush."""

    def __init__(self) -> None:
        self._z = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, 15,
                                   zdict=HEADER_DICTIONARY)

    def encode(self, headers: dict[str, str]) -> bytes:
        pairs = [(k.lower(), v) for k, v in headers.items() if k.lower() not in _FORBIDDEN_HEADERS]
        raw = bytearray(struct.pack(">I", len(pairs)))
        for name, value in pairs:
            n, v = name.encode("latin-1"), str(value).encode("latin-1")
            raw += struct.pack(">I", len(n)) + n + struct.pack(">I", len(v)) + v
        return self._z.compress(bytes(raw)) + self._z.flush(zlib.Z_SYNC_FLUSH)


class HeaderDecoder:
    def __init__(self) -> None:
        self._z = zlib.decompressobj(zdict=HEADER_DICTIONARY)

    def decode(self, block: bytes) -> dict[str, str]:
        try:
            raw = self._z.decompress(block, MAX_HEADER_BLOCK + 1)
        except zlib.error as e:
            raise SpdyProtocolError(f"header block: {e}") from None
        if len(raw) > MAX_HEADER_BLOCK or self._z.unconsumed_tail:
            raise SpdyProtocolError("header block too large")
        return parse_header_block(raw)


def parse_header_block(raw: bytes) -> dict[str, str]:
    """The uncompressed block: a count, then length-prefixed names and values; several values
    of one name are NUL-separated (joined here with ", " as HTTP/1.1 would)."""
    if len(raw) < 4:
        raise SpdyProtocolError("header block truncated")
    (count,) = struct.unpack_from(">I", raw)
    pos, out = 4, {}
    for _ in range(count):
        name, pos = _length_prefixed(raw, pos)
        value, pos = _length_prefixed(raw, pos)
        if not name:
            raise SpdyProtocolError("empty header name")
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1").replace("\x00", ", ")
        out[key] = f"{out[key]}, {text}" if key in out else text
    if pos != len(raw):
        raise SpdyProtocolError("trailing bytes after the header block")
    return out


def _length_prefixed(raw: bytes, pos: int) -> tuple[bytes, int]:
    if pos + 4 > len(raw):
        raise SpdyProtocolError("header block truncated")
    (n,) = struct.unpack_from(">I", raw, pos)
    pos += 4
    if pos + n > len(raw):
        raise SpdyProtocolError("header block truncated")
    return raw[pos:pos + n], pos + n


# --- encoding -------------------------------------------------------------------------------


def _control(ftype: int, flags: int, payload: bytes) -> bytes:
    if len(payload) > MAX_LENGTH:
        raise ValueError("control frame too large")
    return struct.pack(">HHI", 0x8000 | VERSION, ftype, (flags << 24) | len(payload)) + payload


def encode_data(stream_id: int, data: bytes, fin: bool = False) -> bytes:
    if len(data) > MAX_LENGTH:
        raise ValueError("data frame too large")
    return struct.pack(">II", stream_id & MAX_STREAM_ID,
                       ((FLAG_FIN if fin else 0) << 24) | len(data)) + data


def encode_syn_stream(enc: HeaderEncoder, f: SynStream) -> bytes:
    flags = (FLAG_FIN if f.fin else 0) | (FLAG_UNIDIRECTIONAL if f.unidirectional else 0)
    head = struct.pack(">IIBB", f.stream_id, f.associated_id, (f.priority & 7) << 5, 0)
    return _control(SYN_STREAM, flags, head + enc.encode(f.headers))


def encode_syn_reply(enc: HeaderEncoder, f: SynReply) -> bytes:
    return _control(SYN_REPLY, FLAG_FIN if f.fin else 0,
                    struct.pack(">I", f.stream_id) + enc.encode(f.headers))


def encode_headers(enc: HeaderEncoder, f: Headers) -> bytes:
    return _control(HEADERS, FLAG_FIN if f.fin else 0,
                    struct.pack(">I", f.stream_id) + enc.encode(f.headers))


def encode_rst_stream(stream_id: int, status: int) -> bytes:
    return _control(RST_STREAM, 0, struct.pack(">II", stream_id, status))


def encode_settings(values: dict[int, int], clear: bool = False) -> bytes:
    body = struct.pack(">I", len(values))
    for key, value in values.items():
        body += struct.pack(">II", key & 0xFFFFFF, value)
    return _control(SETTINGS, 1 if clear else 0, body)


def encode_ping(ping_id: int) -> bytes:
    return _control(PING, 0, struct.pack(">I", ping_id))


def encode_goaway(last_good_id: int, status: int = GOAWAY_OK) -> bytes:
    return _control(GOAWAY, 0, struct.pack(">II", last_good_id, status))


def encode_window_update(stream_id: int, delta: int) -> bytes:
    return _control(WINDOW_UPDATE, 0, struct.pack(">II", stream_id, delta))


def encode(enc: HeaderEncoder, frame: Frame) -> bytes:
    """Any frame (the session uses the specific encoders; this serves tests and tools)."""
    match frame:
        case DataFrame():
            return encode_data(frame.stream_id, frame.data, frame.fin)
        case SynStream():
            return encode_syn_stream(enc, frame)
        case SynReply():
            return encode_syn_reply(enc, frame)
        case Headers():
            return encode_headers(enc, frame)
        case RstStream():
            return encode_rst_stream(frame.stream_id, frame.status)
        case Settings():
            return encode_settings(frame.values, frame.clear)
        case Ping():
            return encode_ping(frame.id)
        case GoAway():
            return encode_goaway(frame.last_good_id, frame.status)
        case WindowUpdate():
            return encode_window_update(frame.stream_id, frame.delta)
    raise TypeError(f"cannot encode {frame!r}")


# --- parsing --------------------------------------------------------------------------------


class FrameParser:
    """Incremental: `feed` any chunking of the byte stream, get whole frames back."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._headers = HeaderDecoder()

    def feed(self, data: bytes) -> list[Frame]:
        # Parsed straight from `data` when nothing is pending (the common case), so that a
        # DATA payload is copied once; only an incomplete tail is kept.
        buffered = bool(self._buf)
        if buffered:
            self._buf += data
        src = self._buf if buffered else data
        frames: list[Frame] = []
        pos, end = 0, len(src)
        with memoryview(src) as view:
            while end - pos >= 8:
                word, flags_len = struct.unpack_from(">II", src, pos)
                length = flags_len & MAX_LENGTH
                if end - pos - 8 < length:
                    break
                payload = bytes(view[pos + 8:pos + 8 + length])
                flags = flags_len >> 24
                pos += 8 + length
                if word & 0x80000000:
                    frames.append(self._control(word, flags, payload))
                else:
                    sid = word & MAX_STREAM_ID
                    if sid == 0:
                        raise SpdyProtocolError("data frame on stream 0")
                    frames.append(DataFrame(sid, payload, bool(flags & FLAG_FIN)))
        if buffered:
            del self._buf[:pos]
        elif pos < end:
            self._buf = bytearray(data[pos:])
        return frames

    @property
    def pending(self) -> int:
        return len(self._buf)

    def _control(self, word: int, flags: int, p: bytes) -> Frame:
        version, ftype = (word >> 16) & 0x7FFF, word & 0xFFFF
        if version != VERSION:
            raise SpdyProtocolError(f"unsupported SPDY version {version}")
        fin = bool(flags & FLAG_FIN)
        if ftype == SYN_STREAM:
            _need(p, 10, "SYN_STREAM")
            sid, assoc, pri, _slot = struct.unpack_from(">IIBB", p)
            headers = self._headers.decode(p[10:])  # always decode: the zlib stream is shared
            return SynStream(_stream_id(sid, "SYN_STREAM"), headers, fin,
                             bool(flags & FLAG_UNIDIRECTIONAL), assoc & MAX_STREAM_ID, pri >> 5)
        if ftype in (SYN_REPLY, HEADERS):
            _need(p, 4, "SYN_REPLY" if ftype == SYN_REPLY else "HEADERS")
            (sid,) = struct.unpack_from(">I", p)
            headers = self._headers.decode(p[4:])
            cls = SynReply if ftype == SYN_REPLY else Headers
            return cls(_stream_id(sid, cls.__name__), headers, fin)
        if ftype == RST_STREAM:
            _exact(p, 8, "RST_STREAM")
            sid, status = struct.unpack(">II", p)
            return RstStream(_stream_id(sid, "RST_STREAM"), status)
        if ftype == SETTINGS:
            _need(p, 4, "SETTINGS")
            (count,) = struct.unpack_from(">I", p)
            if len(p) != 4 + 8 * count:
                raise SpdyProtocolError("SETTINGS frame of the wrong length")
            values = {}
            for i in range(count):
                key, value = struct.unpack_from(">II", p, 4 + 8 * i)
                values[key & 0xFFFFFF] = value
            return Settings(values, bool(flags & 1))
        if ftype == PING:
            _exact(p, 4, "PING")
            return Ping(struct.unpack(">I", p)[0])
        if ftype == GOAWAY:
            _exact(p, 8, "GOAWAY")
            last, status = struct.unpack(">II", p)
            return GoAway(last & MAX_STREAM_ID, status)
        if ftype == WINDOW_UPDATE:
            _exact(p, 8, "WINDOW_UPDATE")
            sid, delta = struct.unpack(">II", p)
            return WindowUpdate(sid & MAX_STREAM_ID, delta & MAX_STREAM_ID)
        return UnknownControl(ftype)


def _need(p: bytes, n: int, what: str) -> None:
    if len(p) < n:
        raise SpdyProtocolError(f"{what} frame too short")


def _exact(p: bytes, n: int, what: str) -> None:
    if len(p) != n:
        raise SpdyProtocolError(f"{what} frame of the wrong length")


def _stream_id(sid: int, what: str) -> int:
    sid &= MAX_STREAM_ID
    if sid == 0:
        raise SpdyProtocolError(f"{what} on stream 0")
    return sid
