"""Suite-wide settings: offscreen Qt, a test keyring backend, no stray kubeconfig."""

from __future__ import annotations

import os

# Qt must never try to reach a real display in tests.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# Never touch the developer's real keyring from tests unless a test asks for it.
os.environ.setdefault("PYTHON_KEYRING_BACKEND", "keyring.backends.null.Keyring")
