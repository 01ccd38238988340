"""Prove the Node yamux peer (tests/interop/peer.mjs) works before Wicket is tested against it.

(a) peer.mjs server against peer.mjs client: both sides are @libp2p/yamux.
(b) a hand-written raw-frame client (plain socket + ``struct``, no Wicket code) against the
    node server: proves the peer speaks hashicorp yamux on the wire.
"""

from __future__ import annotations

import hashlib
import random
import select
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from tests.interop.node_peer import NodePeer, node_missing_reason

pytestmark = [
    pytest.mark.interop,
    pytest.mark.timeout(120),
    pytest.mark.skipif(node_missing_reason() is not None, reason=node_missing_reason() or ""),
]

MIB = 1024 * 1024


# -- (a) node against node ---------------------------------------------------------------------


def test_node_server_against_node_client() -> None:
    streams, size = 4, MIB
    with NodePeer.server(timeout_ms=60_000) as server:
        assert server.port is not None
        with NodePeer.client(
            server.port,
            *("--streams", str(streams), "--bytes", str(size)),
            *("--reset-streams", "2", "--expect-reset-streams", "1"),
            *("--sink-bytes", str(4 * MIB), "--open-streams", "2", "--open-bytes", "300000"),
            "--ping",
            timeout_ms=60_000,
        ) as client:
            client_summary = client.assert_ok(60)
        server_summary = server.assert_ok(30)

    # client side: every echo verified by SHA-256, resets sent/received, pings measured
    echoes = client.find("stream", mode="echo", direction="outbound")
    assert len(echoes) == streams
    assert all(e["ok"] and e["bytes_received"] == size for e in echoes)
    assert [e["id"] % 2 for e in echoes] == [1] * streams  # client opens odd ids
    assert len(client.find("stream", mode="reset", result="reset_sent")) == 2
    assert client.find("stream", mode="expect_reset", result="reset", ok=True)
    assert client.find("stream", mode="sink", ok=True)
    assert client.find("stream", mode="open_control", ok=True)
    assert len(client.find("stream", mode="echo", direction="inbound", result="closed")) == 2
    assert client_summary["pings"] >= 1

    # server side: saw the same bytes, saw the client's resets, opened even ids towards it
    by_id = {e["id"]: e for e in server.find("stream", direction="inbound")}
    for e in echoes:
        assert by_id[e["id"]]["sha256_in"] == e["sha256_sent"]
        assert by_id[e["id"]]["result"] == "closed"
    reset_ids = [e["id"] for e in client.find("stream", mode="reset")]
    assert all(by_id[i]["result"] == "reset" for i in reset_ids)
    opened = server.find("stream", mode="open", direction="outbound", ok=True)
    assert len(opened) == 2
    assert all(e["id"] % 2 == 0 for e in opened)
    assert server.find("goaway", direction="received", code=0)
    assert server_summary["ping_requests_answered"] >= 1


# -- (b) raw frames against the node server ------------------------------------------------------

HEADER = struct.Struct(">BBHII")  # version, type, flags, stream id, length
T_DATA, T_WINDOW_UPDATE, T_PING, T_GO_AWAY = 0, 1, 2, 3
F_SYN, F_ACK, F_FIN, F_RST = 0x1, 0x2, 0x4, 0x8
INITIAL_WINDOW = 256 * 1024
CHUNK = 16 * 1024


@dataclass
class RawStream:
    send_window: int = INITIAL_WINDOW
    max_send_window: int = INITIAL_WINDOW
    recv_available: int = INITIAL_WINDOW  # what the peer may still send us
    recv_unacked: int = 0  # consumed, not yet granted back
    data: bytearray = field(default_factory=bytearray)
    first_flags: int | None = None
    remote_fin: bool = False
    remote_rst: bool = False


class RawYamux:
    """Just enough of a yamux client, written from the spec, to drive the node peer."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.rx = bytearray()
        self.streams: dict[int, RawStream] = {}
        self.pings_answered: list[int] = []
        self.pongs: list[int] = []
        self.goaway: int | None = None
        self.eof = False

    def send(self, ftype: int, flags: int, sid: int, length: int, payload: bytes = b"") -> None:
        self.sock.sendall(HEADER.pack(0, ftype, flags, sid, length) + payload)

    def pump(self, timeout: float) -> None:
        """Read what arrives within ``timeout`` and handle every complete frame."""
        readable, _, _ = select.select([self.sock], [], [], timeout)
        if readable:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                self.eof = True
            self.rx += chunk
        while len(self.rx) >= HEADER.size:
            version, ftype, flags, sid, length = HEADER.unpack_from(self.rx)
            assert version == 0
            size = HEADER.size + (length if ftype == T_DATA else 0)
            if len(self.rx) < size:
                break
            payload = bytes(self.rx[HEADER.size : size])
            del self.rx[:size]
            self.handle(ftype, flags, sid, length, payload)

    def handle(self, ftype: int, flags: int, sid: int, length: int, payload: bytes) -> None:
        if ftype == T_PING:
            assert sid == 0
            if flags & F_SYN:
                self.send(T_PING, F_ACK, 0, length)
                self.pings_answered.append(length)
            elif flags & F_ACK:
                self.pongs.append(length)
            return
        if ftype == T_GO_AWAY:
            self.goaway = length
            return
        assert ftype in (T_DATA, T_WINDOW_UPDATE), ftype
        st = self.streams[sid]  # the node server never opens streams unless asked
        if st.first_flags is None:
            st.first_flags = flags
        if ftype == T_WINDOW_UPDATE:
            st.send_window += length
            st.max_send_window = max(st.max_send_window, st.send_window)
        else:
            st.recv_available -= length
            assert st.recv_available >= 0, "node overran our receive window"
            st.data += payload
            st.recv_unacked += length
            # grant back like the Go library: once half the window is consumed
            if st.recv_unacked >= INITIAL_WINDOW // 2 and not st.remote_fin:
                self.send(T_WINDOW_UPDATE, 0, sid, st.recv_unacked)
                st.recv_available += st.recv_unacked
                st.recv_unacked = 0
        if flags & F_FIN:
            st.remote_fin = True
        if flags & F_RST:
            st.remote_rst = True

    def run_stream(
        self,
        sid: int,
        payload: bytes,
        *,
        fin_on_data: bool,
        ping_value: int | None = None,
        timeout: float = 30.0,
    ) -> RawStream:
        """Open ``sid`` with SYN+data, send ``payload`` within the window, FIN, read to the FIN."""
        st = self.streams[sid] = RawStream()
        deadline = time.monotonic() + timeout
        offset, fin_sent, ping_sent = 0, False, ping_value is None
        while not (st.remote_fin or st.remote_rst):
            while offset < len(payload) and st.send_window > 0:
                n = min(CHUNK, st.send_window, len(payload) - offset)
                last = offset + n == len(payload)
                flags = (F_SYN if offset == 0 else 0) | (F_FIN if last and fin_on_data else 0)
                self.send(T_DATA, flags, sid, n, payload[offset : offset + n])
                st.send_window -= n
                offset += n
                fin_sent = last and fin_on_data
            if offset == len(payload) and not fin_sent:
                self.send(T_WINDOW_UPDATE, F_FIN, sid, 0)  # half-close without data
                fin_sent = True
            if not ping_sent and offset >= len(payload) // 2:
                assert ping_value is not None
                self.send(T_PING, F_SYN, 0, ping_value)
                ping_sent = True
            self.pump(0.0 if offset < len(payload) and st.send_window > 0 else 0.2)
            assert not self.eof, "node closed the connection"
            assert time.monotonic() < deadline, f"stream {sid} stalled at {offset} bytes sent"
        return st

    def run_until(self, done: Callable[[], object], timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            assert time.monotonic() < deadline, "timed out waiting for the node peer"
            self.pump(0.1)


@pytest.mark.parametrize("fin_on_data", [False, True], ids=["fin-window-update", "fin-on-data"])
def test_raw_frame_client_against_node_server(fin_on_data: bool) -> None:
    payload = random.Random(1234).randbytes(MIB)
    digest = hashlib.sha256(payload).hexdigest()
    with NodePeer.server("--keepalive-ms", "200", timeout_ms=60_000) as node:
        assert node.port is not None
        with socket.create_connection(("127.0.0.1", node.port), timeout=10) as sock:
            raw = RawYamux(sock)

            # echo: SYN+data in one frame, window accounting both ways, FIN, echo to node's FIN
            st = raw.run_stream(1, payload, fin_on_data=fin_on_data, ping_value=0xC0FFEE)
            assert not st.remote_rst
            assert st.first_flags is not None and st.first_flags & F_ACK, "node must ACK the SYN"
            assert hashlib.sha256(st.data).hexdigest() == digest
            seen = node.wait_for("stream", id=1, timeout=10)
            assert seen["result"] == "closed" and seen["ok"]
            assert seen["sha256_in"] == digest

            # our ping answered with the same opaque value; node's keepalive pings answered
            raw.run_until(lambda: 0xC0FFEE in raw.pongs and raw.pings_answered)
            node.wait_for("ping_request", value=0xC0FFEE, timeout=10)
            node.wait_for("ping", timeout=10)  # node measured an RTT off our ping reply

            # SINK: 4 MiB one way; node grants more than the initial 256 KiB window
            sink = 4 * MIB
            body = random.Random(99).randbytes(sink)
            st = raw.run_stream(3, b"SINK" + struct.pack(">Q", sink) + body, fin_on_data=False)
            assert bytes(st.data) == hashlib.sha256(body).digest()
            assert st.max_send_window > INITIAL_WINDOW, "node never grew the stream window"

            # "RST!": node resets the stream, after ACKing it
            st = raw.streams[5] = RawStream()
            raw.send(T_DATA, F_SYN, 5, 8, b"RST!xxxx")
            raw.run_until(lambda: raw.streams[5].remote_rst)
            assert not st.data
            node.wait_for("stream", id=5, result="reset_sent", timeout=10)

            # normal GoAway: node ends the session and closes TCP
            raw.send(T_GO_AWAY, 0, 0, 0)
            raw.run_until(lambda: raw.eof)
        summary = node.assert_ok(30)
    assert summary["ping_requests_answered"] >= 1
    assert node.find("goaway", direction="received", code=0)
