"""The stream state table: every change of a stream's state is a lookup here.

As in h11's ``_state.py``: ``(state, action) → next state``, and a pair that is not in
the table is a protocol error, the peer's (``RemoteProtocolError``) when its frame asked
for it, ours (``LocalProtocolError``) otherwise. Every entry is used by the session
(tests/protocol/test_mux_transitions.py drives each one). Streams in ``CLOSED`` or
``RESET`` have left the session, so no action starts from those states.
"""

from __future__ import annotations

from typing import Literal

from core import errors
from core.protocol.mux.stats import StreamState

_S = StreamState

Action = Literal["send_fin", "recv_fin", "recv_data", "rst"]
"""``rst``: the stream is aborted, by the peer's RST, by ours, or with the session."""

_LIVE = (_S.OPEN, _S.LOCAL_CLOSED, _S.REMOTE_CLOSED)

TRANSITIONS: dict[tuple[StreamState, Action], StreamState] = {
    (_S.OPEN, "send_fin"): _S.LOCAL_CLOSED,
    (_S.OPEN, "recv_fin"): _S.REMOTE_CLOSED,
    (_S.LOCAL_CLOSED, "recv_fin"): _S.CLOSED,
    (_S.REMOTE_CLOSED, "send_fin"): _S.CLOSED,
    (_S.OPEN, "recv_data"): _S.OPEN,
    (_S.LOCAL_CLOSED, "recv_data"): _S.LOCAL_CLOSED,
    **{(s, "rst"): _S.RESET for s in _LIVE},
}


def next_state(state: StreamState, action: Action, *, remote: bool, stream_id: int) -> StreamState:
    """The state after ``action``; ``remote``: the peer's frame asked for it."""
    nxt = TRANSITIONS.get((state, action))
    if nxt is None:
        error = errors.RemoteProtocolError if remote else errors.LocalProtocolError
        raise error(f"{action} in state {state.value} on stream {stream_id}")
    return nxt
