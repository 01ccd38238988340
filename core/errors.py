"""Every exception Wicket raises on purpose, in one tree.

Foreign errors (``ssl.SSLError``, ``OSError``, ruamel's ``YAMLError``, keyring's errors)
are translated into this tree at the boundary where they occur, so callers catch
``WicketError`` subclasses only. Where a builtin meaning applies, the class also
inherits it (a timeout is a ``TimeoutError``, a refused stream a
``ConnectionRefusedError``), so generic code keeps working.

``Local*`` errors mean *we* misused a protocol or an API; ``Remote*`` errors mean the
peer sent something invalid.

::

    WicketError
    ├── ConfigError (ValueError)
    │   ├── KubeconfigError
    │   │   ├── KubeconfigParseError          file and line of the parse failure
    │   │   └── KubeconfigLockError           a lock could not be taken in time
    │   ├── TokenError                        a join/client token that does not parse
    │   └── RegistryError                     the relay's registry cannot be opened or
    │                                         migrated (the state dir is left as it was)
    ├── ProtocolError
    │   ├── LocalProtocolError                we asked for something the protocol forbids
    │   └── RemoteProtocolError               the peer broke the protocol
    │       └── UnsupportedVersion            the relay speaks another control version
    ├── MuxError
    │   ├── SessionClosed (ConnectionError)   the session is gone (reason attached)
    │   │   ├── SessionGoneAway               GoAway sent or received: no new streams
    │   │   ├── KeepaliveTimeout (TimeoutError)
    │   │   └── DrainTimeout (TimeoutError)   the peer stopped reading what we write
    │   ├── StreamError
    │   │   ├── StreamReset (ConnectionResetError)
    │   │   ├── StreamRefused (ConnectionRefusedError)
    │   │   ├── StreamClosed                  write after write_eof / close
    │   │   ├── OpenTimeout (TimeoutError)
    │   │   ├── WriteTimeout (TimeoutError)   the stream was reset because of it
    │   │   └── CloseTimeout (TimeoutError)
    │   └── LimitExceeded                     streams, pending opens, buffered bytes
    │       └── StreamIdsExhausted            this side's 32-bit stream ids are used up
    ├── TunnelError
    │   ├── AuthError                         credentials or certificates refused
    │   ├── UpstreamUnavailable               no agent, target down
    │   └── PKIError                          key/certificate generation or loading
    ├── SecretStoreError
    │   ├── SecretBackendUnavailable          no usable backend (fail, plaintext, ...)
    │   │   └── SecretStoreLocked             the keyring is locked (unlock it, retry)
    │   ├── SecretTimeout (TimeoutError)      a backend call hung past its deadline
    │   ├── SecretPassphraseError             wrong passphrase for the encrypted file, or
    │   │                                     no safe source for one (WICKET_PASSPHRASE_FILE)
    │   ├── SecretFileCorrupt                 the encrypted file is damaged (kept as is)
    │   └── CredentialSocketError             the credential socket cannot be served (a live
    │                                         Wicket serves it, or its path is unusable)
    ├── DisplayUnavailable                    the GUI cannot find a display
    └── AlreadyRunning                        another Wicket (the app or `wicket up`)
                                              runs for this user: its kind and pid
"""

from __future__ import annotations


class WicketError(Exception):
    """Base of every error Wicket raises on purpose."""


# -- configuration -------------------------------------------------------------------


class ConfigError(WicketError, ValueError):
    """Invalid configuration or user input."""


class KubeconfigError(ConfigError):
    """A kubeconfig could not be read or written; nothing was changed."""


class KubeconfigParseError(KubeconfigError):
    """A kubeconfig file does not parse; carries the file and line."""

    def __init__(self, path: str, line: int | None, problem: str) -> None:
        where = f"{path}:{line}" if line is not None else path
        super().__init__(f"{where}: {problem}")
        self.path = path
        self.line = line
        self.problem = problem


class KubeconfigLockError(KubeconfigError):
    """A ``<file>.lock`` stayed in place past the wait bound (maybe stale)."""


class TokenError(ConfigError):
    """A join or client token is malformed or does not verify."""


class RegistryError(ConfigError):
    """The relay's registry (``registry.db``) is damaged, foreign, newer than this code,
    or its JSON predecessor cannot be migrated; no file in the state dir was changed."""


# -- protocols -----------------------------------------------------------------------


class ProtocolError(WicketError):
    """A wire protocol was violated."""


class LocalProtocolError(ProtocolError):
    """This side asked for something the protocol forbids (a programming error)."""


class RemoteProtocolError(ProtocolError):
    """The peer sent bytes that violate the protocol.

    ``code`` is the protocol's own error code to report back where it has one (for
    the multiplexer: the GoAway code).
    """

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


class UnsupportedVersion(RemoteProtocolError):
    """The relay speaks no control protocol version this peer said in ``hello``."""


# -- multiplexer ---------------------------------------------------------------------


class MuxError(WicketError):
    """Multiplexer failures, session- or stream-wide."""


class SessionClosed(MuxError, ConnectionError):
    """The mux session is closed; ``reason`` says why."""

    def __init__(self, reason: str = "session closed") -> None:
        super().__init__(reason)
        self.reason = reason


class SessionGoneAway(SessionClosed):
    """GoAway was sent or received: no new streams (a GoAway with an error ends it all)."""


class KeepaliveTimeout(SessionClosed, TimeoutError):
    """The peer did not answer a keepalive ping in time."""


class DrainTimeout(SessionClosed, TimeoutError):
    """The transport took no bytes for ``drain_timeout``: the peer stopped reading."""


class StreamError(MuxError):
    """A failure confined to one stream."""


class StreamReset(StreamError, ConnectionResetError):
    """The stream was reset (by the peer, or locally after a timeout)."""


class StreamRefused(StreamError, ConnectionRefusedError):
    """The peer refused to open the stream (backlog full, going away, limits)."""


class StreamClosed(StreamError):
    """The stream is closed for writing on this side."""


class OpenTimeout(StreamError, TimeoutError):
    """The peer did not acknowledge a stream open in time."""


class WriteTimeout(StreamError, TimeoutError):
    """A write did not get window in time; the stream was reset."""


class CloseTimeout(StreamError, TimeoutError):
    """The peer did not finish its side after ours was closed; the stream was reset."""


class LimitExceeded(MuxError):
    """A configured limit (streams, pending opens, buffered bytes) was reached."""


class StreamIdsExhausted(LimitExceeded):
    """This side used every stream id yamux's 32 bits allow: only a new session helps.

    Not ``SessionGoneAway``: the peer did not go away, and other streams go on.
    """


# -- tunnel --------------------------------------------------------------------------


class TunnelError(WicketError):
    """Relay, agent and endpoint failures."""


class AuthError(TunnelError):
    """Authentication or certificate verification failed."""


class UpstreamUnavailable(TunnelError):
    """The cluster's agent is not connected, or its target refused the connection."""


class PKIError(TunnelError):
    """A key or certificate could not be created, loaded or verified."""


# -- secrets -------------------------------------------------------------------------


class SecretStoreError(WicketError):
    """The secret store failed; the secret was not stored or read."""


class SecretBackendUnavailable(SecretStoreError):
    """No secure keyring backend is usable here."""


class SecretTimeout(SecretStoreError, TimeoutError):
    """A keyring call did not return in time (a locked SecretService can hang)."""


class SecretStoreLocked(SecretBackendUnavailable):
    """The keyring exists but is locked, and unlocking was refused or dismissed."""


class SecretPassphraseError(SecretStoreError):
    """The passphrase does not open the encrypted secrets file, or none can be had safely
    (no terminal, or a ``WICKET_PASSPHRASE_FILE`` that others could read)."""


class SecretFileCorrupt(SecretStoreError):
    """The encrypted secrets file is truncated or was altered; it is left untouched."""


class CredentialSocketError(SecretStoreError):
    """The credential socket cannot be served: another live Wicket serves it already, or
    its path is not a socket Wicket may replace or is too long for a Unix socket."""


# -- desktop -------------------------------------------------------------------------


class DisplayUnavailable(WicketError):
    """There is no display for the desktop app."""


class AlreadyRunning(WicketError):
    """Another Wicket process (the desktop app or ``wicket up``) holds the instance lock.

    ``kind`` is ``"app"`` or ``"up"`` (``""`` and ``pid`` None while the holder is still
    writing its record: it has just started).
    """

    def __init__(self, kind: str, pid: int | None) -> None:
        what = {"up": "`wicket up`", "app": "the Wicket desktop app"}.get(kind, "another Wicket")
        where = f" (pid {pid})" if pid is not None else ""
        super().__init__(
            f"{what} is already running{where}: only one Wicket serves your clusters "
            "at a time; quit it first"
        )
        self.kind = kind
        self.pid = pid
