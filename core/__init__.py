"""Wicket core: protocol state machines, asyncio adapters and the service façade.

Layers (one-way): ``core.service`` → ``core.aio`` → ``core.protocol``. Nothing in
``core`` imports ``gui``, PySide6 or qasync (checked by import-linter in ``make test``).
"""

__version__ = "0.1.0"

from core.compiled import install as _install_compiled

_install_compiled()  # the compiled hot path, if built and current (core/compiled)
