"""Interop tests: Wicket's multiplexer against an independent yamux implementation."""
