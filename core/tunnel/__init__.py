"""Tunnel state that needs no event loop: the relay's cluster registry and token issuance."""
