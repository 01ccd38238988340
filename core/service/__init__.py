"""The service façade the desktop app and the CLI share (grows with the tunnel issue)."""
