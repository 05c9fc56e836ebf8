"""SPDY/3.1 frame codec: every frame round-trips, any chunking parses, bad bytes are protocol
errors (never another exception)."""

from __future__ import annotations

import random
import struct
import zlib

import pytest

from pocketkube.streams import spdy_frames as fr


def roundtrip(frames):
    enc = fr.HeaderEncoder()
    wire = b"".join(fr.encode(enc, f) for f in frames)
    return fr.FrameParser().feed(wire), wire


def test_dictionary_is_the_spdy3_one():
    # the Adler-32 travels in the zlib header as the dictionary id: Go's reader checks it
    assert zlib.adler32(fr.HEADER_DICTIONARY) == 0xE3C6A7C2
    assert len(fr.HEADER_DICTIONARY) == 1423


def test_every_frame_round_trips():
    frames = [
        fr.SynStream(1, {"streamtype": "data", "port": "80", "requestid": "0"}, fin=False,
                     unidirectional=False, associated_id=0, priority=3),
        fr.SynStream(3, {"streamtype": "error"}, fin=True),
        fr.SynReply(1, {}, fin=False),
        fr.SynReply(3, {"x": "y"}, fin=True),
        fr.Headers(1, {"a": "b"}, fin=True),
        fr.DataFrame(1, b"hello", fin=False),
        fr.DataFrame(1, b"", fin=True),
        fr.RstStream(5, fr.CANCEL),
        fr.Settings({fr.SETTINGS_INITIAL_WINDOW_SIZE: 1 << 20, fr.SETTINGS_MAX_CONCURRENT_STREAMS: 100}),
        fr.Ping(7),
        fr.GoAway(9, fr.GOAWAY_PROTOCOL_ERROR),
        fr.WindowUpdate(0, 32768),
        fr.WindowUpdate(1, 1),
    ]
    parsed, _ = roundtrip(frames)
    assert parsed == frames


def test_header_names_are_lowercased_and_hop_by_hop_headers_dropped():
    parsed, _ = roundtrip([fr.SynReply(2, {"StreamType": "error", "Connection": "close",
                                           "Host": "x", "Transfer-Encoding": "chunked"})])
    assert parsed[0].headers == {"streamtype": "error"}


def test_control_frame_layout_matches_the_spec():
    wire = fr.encode_ping(1)
    assert wire == bytes([0x80, 3, 0, 6, 0, 0, 0, 4, 0, 0, 0, 1])
    wire = fr.encode_data(5, b"ab", fin=True)
    assert wire == bytes([0, 0, 0, 5, 1, 0, 0, 2]) + b"ab"
    assert fr.encode_goaway(3)[4:8] == bytes([0, 0, 0, 8])  # Go requires exactly 8


def test_header_block_is_one_zlib_stream_with_the_dictionary():
    enc = fr.HeaderEncoder()
    first = enc.encode({"streamtype": "data"})
    # zlib header with FDICT set, then the dictionary id
    assert first[1] & 0x20
    assert struct.unpack(">I", first[2:6])[0] == 0xE3C6A7C2
    second = enc.encode({"streamtype": "data"})
    with pytest.raises(zlib.error):  # no zlib header: it continues the first block's stream
        zlib.decompressobj(zdict=fr.HEADER_DICTIONARY).decompress(second)
    dec = fr.HeaderDecoder()
    assert dec.decode(first) == {"streamtype": "data"}
    assert dec.decode(second) == {"streamtype": "data"}


def test_multi_valued_headers_are_joined():
    block = struct.pack(">I", 1) + struct.pack(">I", 1) + b"a" + struct.pack(">I", 3) + b"x\x00y"
    assert fr.parse_header_block(block) == {"a": "x, y"}


def test_any_chunking_parses_the_same():
    frames = [fr.SynStream(1, {"k": "v" * 100}), fr.DataFrame(1, bytes(range(256)) * 40),
              fr.Ping(3), fr.DataFrame(1, b"", fin=True), fr.SynStream(3, {"k": "w"})]
    enc = fr.HeaderEncoder()
    wire = b"".join(fr.encode(enc, f) for f in frames)
    rng = random.Random(1)
    for _ in range(20):
        parser, got, pos = fr.FrameParser(), [], 0
        while pos < len(wire):
            n = rng.randint(1, 700)
            got += parser.feed(wire[pos:pos + n])
            pos += n
        assert got == frames
        assert parser.pending == 0


def test_unknown_control_frames_are_ignored():
    wire = struct.pack(">HHI", 0x8003, 42, 3) + b"abc" + fr.encode_ping(1)
    assert fr.FrameParser().feed(wire) == [fr.UnknownControl(42), fr.Ping(1)]


@pytest.mark.parametrize("wire, message", [
    (struct.pack(">HHI", 0x8002, fr.PING, 4) + b"\0\0\0\1", "version 2"),
    (struct.pack(">HHI", 0x8003, fr.PING, 2) + b"\0\0", "PING"),
    (struct.pack(">HHI", 0x8003, fr.GOAWAY, 4) + b"\0\0\0\1", "GOAWAY"),
    (struct.pack(">HHI", 0x8003, fr.RST_STREAM, 8) + struct.pack(">II", 0, 5), "stream 0"),
    (struct.pack(">HHI", 0x8003, fr.SETTINGS, 8) + struct.pack(">II", 5, 0), "SETTINGS"),
    (struct.pack(">HHI", 0x8003, fr.SYN_STREAM, 14) + struct.pack(">IIBB", 1, 0, 0, 0) + b"junk",
     "header block"),
    (struct.pack(">HHI", 0x8003, fr.SYN_REPLY, 2) + b"\0\0", "too short"),
    (struct.pack(">II", 0, 1) + b"x", "stream 0"),
])
def test_bad_frames_are_protocol_errors(wire, message):
    with pytest.raises(fr.SpdyProtocolError, match=message):
        fr.FrameParser().feed(wire)


def test_truncated_or_lying_header_blocks_are_protocol_errors():
    z = zlib.compressobj(zdict=fr.HEADER_DICTIONARY)
    lying = z.compress(struct.pack(">I", 5) + struct.pack(">I", 100) + b"ab") + z.flush(zlib.Z_SYNC_FLUSH)
    wire = struct.pack(">HHI", 0x8003, fr.SYN_REPLY, 4 + len(lying)) + struct.pack(">I", 1) + lying
    with pytest.raises(fr.SpdyProtocolError, match="truncated"):
        fr.FrameParser().feed(wire)


def test_a_decompression_bomb_is_refused():
    z = zlib.compressobj(zdict=fr.HEADER_DICTIONARY)
    value = b"a" * (fr.MAX_HEADER_BLOCK + 10)
    bomb = z.compress(struct.pack(">II", 1, 1) + b"x" + struct.pack(">I", len(value)) + value)
    bomb += z.flush(zlib.Z_SYNC_FLUSH)
    wire = struct.pack(">HHI", 0x8003, fr.SYN_REPLY, 4 + len(bomb)) + struct.pack(">I", 1) + bomb
    with pytest.raises(fr.SpdyProtocolError, match="too large"):
        fr.FrameParser().feed(wire)


def test_random_garbage_never_raises_anything_else():
    rng = random.Random(7)
    for _ in range(300):
        junk = bytes(rng.randrange(256) for _ in range(rng.randint(8, 200)))
        if rng.random() < 0.5:  # make it look like a SPDY/3 control frame
            junk = bytes([0x80, 3]) + junk[2:]
        try:
            fr.FrameParser().feed(junk)
        except fr.SpdyProtocolError:
            pass
