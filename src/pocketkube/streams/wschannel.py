"""The WebSocket channel subprotocols of exec, attach and port-forward (Kubernetes' wsstream).

Each message carries one channel's data: binary protocols prefix it with the channel number as a
byte; the base64 ones send text, the channel as an ASCII digit and the payload base64-encoded.
The protocol versions differ in what the channels mean:
- `channel.k8s.io` (v1), `v2.`, `v3.`: the error channel (3) carries the failure's message as
  plain text and nothing on success; v3 added the resize channel (4), which the kubelet's v1
  server also reads;
- `v4.`: the error channel carries a metav1.Status as JSON, success included;
- `v5.`: v4 plus the close signal `[255, channel]` (the client's stdin reached EOF).
A client that offers no subprotocol gets `channel.k8s.io` semantics, as from the kubelet.
Pure functions only: negotiating, encoding and decoding messages.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass

STDIN, STDOUT, STDERR, ERROR, RESIZE = 0, 1, 2, 3, 4
CLOSE = 255  # v5: [255, channel] = no more data on that channel


@dataclass(frozen=True)
class Protocol:
    name: str
    binary: bool = True          # False: base64 text messages
    status_json: bool = False    # the error channel carries a Status as JSON (v4+)
    stream_close: bool = False   # [255, channel] closes a channel (v5)
    resize: bool = True          # the resize channel is read


V5 = Protocol("v5.channel.k8s.io", status_json=True, stream_close=True)
V4 = Protocol("v4.channel.k8s.io", status_json=True)
V4_BASE64 = Protocol("v4.base64.channel.k8s.io", binary=False, status_json=True)
V3 = Protocol("v3.channel.k8s.io")
V2 = Protocol("v2.channel.k8s.io", resize=False)
V1 = Protocol("channel.k8s.io")
V1_BASE64 = Protocol("base64.channel.k8s.io", binary=False)
NONE = Protocol("")  # no subprotocol offered: channel.k8s.io, as the kubelet serves it

EXEC_PROTOCOLS = (V5, V4, V4_BASE64, V3, V2, V1, V1_BASE64)
# Port-forward over WebSocket: the kubelet's protocols (channel 2i = data, 2i+1 = errors of port i).
PORTFORWARD_PROTOCOLS = (V4, V4_BASE64)


class NegotiationError(ValueError):
    pass


def offered(header: str) -> list[str]:
    """The subprotocols a Sec-WebSocket-Protocol header offers, in the client's order."""
    return [p.strip() for p in header.split(",") if p.strip()]


def negotiate(client: list[str], supported: tuple[Protocol, ...]) -> Protocol:
    """The first protocol the client offers that is supported (upstream's handshake: the client's
    preference wins); no offer at all means the unnamed protocol."""
    if not client:
        return NONE
    by_name = {p.name: p for p in supported}
    for name in client:
        if name in by_name:
            return by_name[name]
    names = ["", *(p.name for p in supported)]
    raise NegotiationError(f"requested protocol(s) are not supported: [{' '.join(client)}]; "
                           f"supports [{' '.join(names)}]")


def encode(proto: Protocol, channel: int, data: bytes) -> bytes | str:
    """One message on `channel` (a bytes message for binary protocols, text for base64)."""
    if proto.binary:
        return bytes((channel,)) + data
    return chr(ord("0") + channel) + base64.b64encode(data).decode("ascii")


def decode(proto: Protocol, message: bytes | str) -> tuple[int, bytes] | None:
    """(channel, payload) of a client's message; None for an empty or undecodable one (upstream
    skips those). A v5 close signal decodes as (CLOSE, bytes([channel]))."""
    if isinstance(message, str):
        message = message.encode("utf-8", "replace")
    if not message:
        return None
    channel, payload = message[0], message[1:]
    if proto.stream_close and channel == CLOSE:
        if len(payload) != 1:
            return None
        closed = payload[0] - ord("0") if not proto.binary else payload[0]
        return CLOSE, bytes((closed,))
    if proto.binary:
        return channel, payload
    try:
        return channel - ord("0"), base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        return None


def error_payload(proto: Protocol, status: bytes) -> bytes | None:
    """What the error channel carries for a finished command's Status (JSON bytes): the JSON for
    v4+, the message alone for older versions, and nothing for their success."""
    if proto.status_json:
        return status
    try:
        parsed = json.loads(status)
    except ValueError:
        return status or None
    if not isinstance(parsed, dict):
        return status or None
    if parsed.get("status") == "Success":
        return None
    return str(parsed.get("message") or "").encode()


def port_prefix(port: int) -> bytes:
    """The first message of each port-forward channel: the port, 16-bit little-endian."""
    return port.to_bytes(2, "little")
