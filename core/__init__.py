"""Wicket core: protocol state machines, asyncio adapters and the service façade.

Layers (one-way): ``core.service`` → ``core.aio`` → ``core.protocol``. Nothing in
``core`` imports ``gui``, PySide6 or qasync (checked by import-linter in ``make test``).
"""

__version__ = "0.1.0"
