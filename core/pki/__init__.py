"""Wicket's small PKI: the relay CA, certificates, TLS contexts and enrollment tokens.

Modules (import them directly; this package re-exports nothing so that importing
``core.pki.identity`` from the sans-I/O protocol code pulls in neither ``cryptography``
nor ``ssl``):

- ``identity``  roles, names and the ``wicket://<role>/<name>`` SAN URI (pure)
- ``files``     atomic 0600 writes in a 0700 state directory
- ``keys``      EC P-256 keys, PEM helpers, SHA-256 fingerprints and pins
- ``ca``        the relay CA: create once, load on every later start
- ``certs``     CSRs and certificate issuance (server, agent, client)
- ``tls``       ``ssl.SSLContext`` factories and the verified peer identity
- ``tokens``    join/client token format, secret hashing, log redaction
"""
