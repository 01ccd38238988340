"""The main window (a minimal one until the desktop issue lands)."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QMainWindow

from core import __version__


class MainWindow(QMainWindow):
    """Wicket's main window. Signals: none yet."""

    def __init__(self) -> None:
        super().__init__()
        self.setWindowTitle("Wicket")
        label = QLabel(
            f"<h2>Wicket {__version__}</h2>"
            "<p>Tunnels to Kubernetes apiservers in private networks.</p>"
            "<p>The desktop views are being built; the multiplexer is ready.</p>"
        )
        label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setCentralWidget(label)
        self.resize(640, 400)
