"""The running app's end of the hand-over: a second launch asks it to raise its window.

The lock and the protocol are ``core.service.instance``'s; this is the listener, a
``QLocalServer`` on the lock's ``app.sock`` (user-only, in the 0700 runtime directory).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from PySide6.QtCore import QObject, Signal
from PySide6.QtNetwork import QLocalServer, QLocalSocket

from core.service.instance import RAISE_REQUEST, RAISED

log = logging.getLogger("wicket.gui")


class RaiseServer(QObject):
    """Answers ``raise`` on the instance socket. Signals: ``raise_requested()``."""

    raise_requested = Signal()

    def __init__(self, path: Path, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.path = path
        self.server = QLocalServer(self)
        self.server.setSocketOptions(QLocalServer.SocketOption.UserAccessOption)
        self.server.newConnection.connect(self._connected)

    def listen(self) -> bool:
        """Listen (a socket left by a killed app is removed: the caller holds the lock)."""
        QLocalServer.removeServer(str(self.path))
        if self.server.listen(str(self.path)):
            return True
        log.warning("a second launch cannot reach this app: %s", self.server.errorString())
        return False

    def close(self) -> None:
        self.server.close()

    def _connected(self) -> None:
        while (conn := self.server.nextPendingConnection()) is not None:
            conn.readyRead.connect(lambda c=conn: self._read(c))
            conn.disconnected.connect(conn.deleteLater)
            self._read(conn)  # the request may have arrived with the connection

    def _read(self, conn: QLocalSocket) -> None:
        if not conn.canReadLine():
            return
        if bytes(conn.readLine(64).data()) == RAISE_REQUEST:
            self.raise_requested.emit()
            conn.write(f"{RAISED} {os.getpid()}\n".encode())
            conn.flush()
        conn.disconnectFromServer()
