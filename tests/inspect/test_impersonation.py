"""``Impersonate-*`` is never silently dropped: a 403 ``Status``, sans-I/O.

The endpoint authenticates upstream as its own identity; dropping kubectl ``--as``
would run the request as that identity instead of refusing it.
"""

from __future__ import annotations

import json

import pytest

from core.protocol.http_proxy import (
    IMPERSONATION_REFUSED,
    HttpProxy,
    ProxyPolicy,
    ProxyState,
)

HEAD = b"GET /api/v1/pods HTTP/1.1\r\nHost: h:1\r\nAuthorization: Bearer tok\r\n"


def proxy(*, callers_own: bool) -> HttpProxy:
    policy = ProxyPolicy("tok", frozenset({"h:1"}), "api", "Bearer up", callers_own)
    return HttpProxy(policy)


@pytest.mark.parametrize(
    "header",
    [b"Impersonate-User: nobody", b"Impersonate-Group: g", b"impersonate_uid: 1"],
)
def test_impersonation_is_a_403_status(header: bytes) -> None:
    p = proxy(callers_own=False)
    p.client_data_received(HEAD + header + b"\r\n\r\n", 0.0)
    head, _, body = p.client_data_to_send().partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 403 "), head
    status = json.loads(body)
    assert status["kind"] == "Status" and status["code"] == 403, status
    assert status["reason"] == "Forbidden"
    assert status["message"] == IMPERSONATION_REFUSED
    assert "--credential-is-callers-own" in status["message"]
    assert not p.wants_upstream and p.upstream_data_to_send() == b""
    assert p.state is ProxyState.CLOSED
    (exchange,) = p.exchanges
    assert exchange.status == 403 and exchange.error == IMPERSONATION_REFUSED


def test_callers_own_credential_lets_impersonation_through() -> None:
    p = proxy(callers_own=True)
    p.client_data_received(HEAD + b"Impersonate-User: nobody\r\n\r\n", 0.0)
    assert p.wants_upstream and p.client_data_to_send() == b""
    p.upstream_connected()
    assert b"impersonate-user: nobody\r\n" in p.upstream_data_to_send()


def test_a_nominated_impersonate_header_is_hop_by_hop() -> None:
    """Named by ``Connection`` it is meant for this hop only: dropped, not refused."""
    p = proxy(callers_own=False)
    p.client_data_received(
        HEAD + b"Connection: Impersonate-User\r\nImpersonate-User: a\r\n\r\n", 0.0
    )
    p.upstream_connected()
    sent = p.upstream_data_to_send()
    assert sent.startswith(b"GET /api/v1/pods ") and b"impersonate" not in sent.lower()
