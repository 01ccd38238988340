"""Wicket's desktop app (PySide6 + qasync), built on ``core.service``."""
