"""``ssl.SSLContext`` factories for relay, agents and desktop clients, and peer identity.

- TLS 1.3 only, no ALPN (in particular never ``h2``: the bytes inside are yamux), the
  relay CA as the *only* trust anchor, ``VERIFY_X509_STRICT``.
- The relay's server context is ``CERT_OPTIONAL`` by default: a not-yet-enrolled peer
  connects without a certificate and may only send ``enroll`` (docs/control.md). A
  certificate that *is* presented must verify against the CA and carry ``clientAuth``,
  or the handshake fails. Role and name are read afterwards with ``peer_identity`` and
  checked by the relay; a session without an identity gets nothing but enrollment.
- Client contexts always verify the CA and the server name (``server_hostname=`` at
  connect time). The one exception is ``discovery_context``, see there.
- ``load_cert_chain`` needs files: keys live in 0600 files in the 0700 state directory
  (``certs.write_identity_files``, ``certs.load_or_create_server_cert``); a key file that
  others can read is refused.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509

from core.errors import PKIError
from core.pki import files
from core.pki.identity import Identity
from core.pki.keys import cert_to_pem, fingerprint, normalize_fingerprint

SSLObjectLike = ssl.SSLObject | ssl.SSLSocket


def server_context(
    chain_file: Path,
    key_file: Path,
    ca: x509.Certificate,
    *,
    require_client_cert: bool = False,
) -> ssl.SSLContext:
    """The relay's server context (``CERT_OPTIONAL`` unless ``require_client_cert``).

    It issues no TLS 1.3 session tickets: peers never resume a session (each one is a
    full mutual-TLS handshake), and the two tickets OpenSSL sends by default, each
    sealing the client's certificate, were ~40% of the relay's handshake CPU (a fleet
    reconnecting after a relay restart: tests/bench/scale_bench.py).
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _harden(ctx, ca)
    ctx.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_OPTIONAL
    ctx.num_tickets = 0
    _load_chain(ctx, chain_file, key_file)
    return ctx


def client_context(
    ca: x509.Certificate,
    *,
    cert_file: Path | None = None,
    key_file: Path | None = None,
) -> ssl.SSLContext:
    """A verifying client context; pass ``server_hostname`` when connecting.

    With ``cert_file``/``key_file`` it presents the peer's certificate (mTLS).
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    _harden(ctx, ca)
    if (cert_file is None) != (key_file is None):
        raise ValueError("cert_file and key_file go together")
    if cert_file is not None and key_file is not None:
        _load_chain(ctx, cert_file, key_file)
    return ctx


def discovery_context() -> ssl.SSLContext:
    """The only non-verifying context: used once to *find* the relay CA by its pin.

    A new peer knows the CA's SHA-256 fingerprint (from its token) but not the CA. It
    connects with this context, calls ``ca_from_chain(unverified_chain(obj), pin)``, and
    closes the connection **without writing a byte**; the real connection then uses
    ``client_context(ca)``. Nothing secret ever crosses a connection made with this
    context, and nothing it yields is trusted except through the pin.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def unverified_chain(ssl_object: SSLObjectLike) -> list[bytes]:
    """The DER certificates the server presented (leaf first), verified or not.

    Public from Python 3.13; on 3.11/3.12 the same method exists on the private
    ``_sslobj`` (CPython 3.10+).
    """
    method = getattr(ssl_object, "get_unverified_chain", None)
    if method is None:
        method = getattr(getattr(ssl_object, "_sslobj", None), "get_unverified_chain", None)
    if method is None:
        raise PKIError("this Python cannot read the peer's certificate chain")
    chain = method() or []
    return [
        c if isinstance(c, bytes) else ssl.PEM_cert_to_DER_cert(c.public_bytes()) for c in chain
    ]


def ca_from_chain(chain: Sequence[bytes], pin: str) -> x509.Certificate:
    """The certificate in ``chain`` whose SHA-256 fingerprint is ``pin`` (a CA)."""
    want = normalize_fingerprint(pin)
    for der in chain:
        if fingerprint(der) == want:
            try:
                cert = x509.load_der_x509_certificate(der)
                ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
            except (ValueError, x509.ExtensionNotFound) as exc:
                raise PKIError("the pinned certificate is not a usable CA") from exc
            if not ca:
                raise PKIError("the pinned certificate is not a CA")
            return cert
    raise PKIError("the relay did not present a CA matching the pinned fingerprint")


def peer_identity(ssl_object: SSLObjectLike) -> Identity | None:
    """Role and name from the *verified* peer certificate's single ``wicket://`` URI.

    ``None`` when there is no verified certificate (``getpeercert()`` is empty unless
    the chain verified) or when it carries no, or more than one, Wicket identity.
    """
    cert = ssl_object.getpeercert()
    if not cert:
        return None
    uris = [
        entry[1]
        for entry in cert.get("subjectAltName", ())
        if isinstance(entry, tuple)
        and entry[0] == "URI"
        and isinstance(entry[1], str)
        and entry[1].startswith("wicket:")
    ]
    if len(uris) != 1:
        return None
    return Identity.from_uri(uris[0])


def _harden(ctx: ssl.SSLContext, ca: x509.Certificate) -> None:
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.verify_flags |= ssl.VERIFY_X509_STRICT
    ctx.load_verify_locations(cadata=cert_to_pem(ca).decode("ascii"))


def _load_chain(ctx: ssl.SSLContext, cert_file: Path, key_file: Path) -> None:
    files.read_file(key_file, private=True)
    try:
        ctx.load_cert_chain(cert_file, key_file)
    except (ssl.SSLError, OSError) as exc:
        raise PKIError(f"{cert_file}, {key_file}: cannot load certificate and key") from exc
