"""The agent: inside the private network, dials out to the relay and serves streams.

For every stream the relay opens it dials **only** its configured target (a compromised
relay must not turn it into an open proxy), answers the status, then splices bytes
untouched. It keeps one session per member of a relay fleet (``core.aio.agentpool``),
or the one session to a relay on its own. It acknowledges a stream with its status
(``MuxConfig.defer_ack``), not with a frame of its own: the relay's opens wait at most
the preamble and dial deadlines (10 + 10 s), well inside the relay's 30 s ``open_timeout``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import ClassVar

from core.aio.agentpool import MemberSessionInfo, SessionPool
from core.aio.mux import MuxConnection, MuxStream, StreamHandler
from core.aio.peer import TUNNEL_MUX, RelayPeer
from core.aio.tunnel import (
    PREAMBLE_TIMEOUT,
    PreambleReader,
    StreamBook,
    StreamInfo,
    StreamRecord,
    reply,
    spliced,
)
from core.errors import ConfigError
from core.format import host_port
from core.pki.identity import Role
from core.pki.tokens import Token
from core.protocol.mux import MuxConfig
from core.protocol.preamble import Status, StreamRequest, StreamStatus

log = logging.getLogger("wicket.agent")

AGENT_MUX = replace(TUNNEL_MUX, defer_ack=True)
_OK = StreamStatus(Status.OK).encode()
_DIAL_TIMEOUT = "dial timeout"  # the message of the deadline's cancel()


@dataclass(frozen=True)
class AgentSnapshot:
    cluster: str | None
    relay: str | None
    target: str
    state: str
    last_error: str | None
    rtt: float | None
    connected_since: float | None
    reconnects: int
    streams: list[StreamInfo]
    #: One per relay session: per fleet member, or the one to a relay on its own.
    sessions: list[MemberSessionInfo]


class Agent(RelayPeer):
    """Runs until ``stop()``; ``snapshot()`` is cheap and immutable."""

    role: ClassVar[Role] = Role.AGENT

    def __init__(
        self,
        state_dir: Path,
        target_host: str,
        target_port: int,
        *,
        token: Token | None = None,
        mux: MuxConfig = AGENT_MUX,
        dial_timeout: float = 10.0,
        **backoff: float,
    ) -> None:
        if mux.defer_ack and PREAMBLE_TIMEOUT + dial_timeout >= mux.open_timeout:
            raise ConfigError(
                f"dial timeout {dial_timeout} s: a deferred ACK would come after the"
                f" {mux.open_timeout} s open timeout"
            )
        super().__init__(state_dir, token, mux, **backoff)
        self.target_host = target_host
        self.target_port = target_port
        self.dial_timeout = dial_timeout
        self.book = StreamBook()
        self._dials: dict[asyncio.Task[None], asyncio.TimerHandle] = {}
        self.pool: SessionPool | None = None

    @property
    def target(self) -> str:
        return host_port(self.target_host, self.target_port)

    async def stop(self) -> None:
        for task in list(self._dials):
            task.cancel()
        await super().stop()
        for record in list(self.book.open.values()):
            if record.splice is not None:
                record.splice.close()

    @property
    def conn(self) -> MuxConnection | None:
        """A live session (the first of the pool's), or None while there is none."""
        pool = self.pool
        online = [s.conn for s in pool.sessions() if s.online] if pool is not None else []
        return online[0] if online and online[0] is not None else None

    def snapshot(self) -> AgentSnapshot:
        creds = self.creds
        pool = self.pool
        return AgentSnapshot(
            creds.identity.name if creds else None,
            creds.relay if creds else None,
            self.target,
            self.state,
            self.last_error,
            self.rtt,
            self.connected_since,
            self.reconnects,
            self.book.snapshot(),
            [s.info() for s in pool.sessions()] if pool is not None else [],
        )

    async def _session(self) -> None:
        """Run the pool of sessions (it reconnects each itself) until stopped."""
        assert self.creds is not None
        self.pool = SessionPool(
            self.creds,
            self.target,
            mux=self.mux,
            stream_handler=self.stream_handler(),
            changed=self._pool_changed,
            backoff_base=self.backoff_base,
            backoff_cap=self.backoff_cap,
        )
        try:
            await self.pool.run()
        finally:
            self.pool = None

    def _pool_changed(self) -> None:
        """The agent's own state follows its sessions: online while any one is."""
        pool = self.pool
        sessions = pool.sessions() if pool is not None else []
        online = [s for s in sessions if s.online]
        if online:
            self.state = "online"
            self.last_error = None
            self.connected_since = min(s.connected_since or time.time() for s in online)
            self._online.set()
            return
        self._online.clear()
        self.connected_since = None
        self.state = "reconnecting" if any(s.reconnects for s in sessions) else "connecting"
        errors = [s.last_error for s in sessions if s.last_error]
        self.last_error = errors[0] if errors else self.last_error
        self.reconnects = sum(s.reconnects for s in sessions)

    def stream_handler(self) -> StreamHandler:
        return self._on_stream

    def _on_stream(self, stream: MuxStream) -> None:
        PreambleReader(stream, self._on_request)

    def _on_request(self, stream: MuxStream, request: StreamRequest, rest: bytes) -> None:
        creds = self.creds
        if creds is None or request.cluster != creds.identity.name:
            reply(stream, Status.FORBIDDEN, "wrong cluster for this agent")
            return
        record = self.book.add(StreamRecord.of(request))
        loop = stream.loop
        task = loop.create_task(self._dial(stream, record, rest))
        # The dial's deadline is a plain timer that cancels it (asyncio.timeout() costs a
        # Python object, a timer and two context-manager calls per connection).
        self._dials[task] = loop.call_later(self.dial_timeout, task.cancel, _DIAL_TIMEOUT)
        task.add_done_callback(self._dialled)

    def _dialled(self, task: asyncio.Task[None]) -> None:
        deadline = self._dials.pop(task, None)
        if deadline is not None:
            deadline.cancel()

    async def _dial(self, stream: MuxStream, record: StreamRecord, rest: bytes) -> None:
        try:
            tcp, _ = await stream.loop.create_connection(
                asyncio.Protocol, self.target_host, self.target_port
            )
        except asyncio.CancelledError as exc:
            if exc.args != (_DIAL_TIMEOUT,):
                raise  # stop(), not the deadline
            self._unreachable(stream, record, "timeout")
            return
        except OSError as exc:
            self._unreachable(stream, record, str(exc) or "timeout")
            return
        if stream.is_closing():
            tcp.abort()
            self.book.done(record, "client went away")
            return
        stream.write(_OK)
        spliced(self.book, record, stream, tcp, first_to_b=rest)
        stream.resume_reading()

    def _unreachable(self, stream: MuxStream, record: StreamRecord, reason: str) -> None:
        log.warning("target %s unreachable: %s", self.target, reason)
        reply(stream, Status.TARGET_UNREACHABLE, f"agent cannot reach its target: {reason}")
        self.book.done(record, f"target unreachable: {reason}")
