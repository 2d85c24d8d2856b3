"""TLS failures said as one sentence that tells the user what to do, for the HTTP and the WebSocket half alike.

Certificates are always verified (the default contexts of urllib and websocket-client); a server with its own
certificate authority is trusted the OpenSSL way, by pointing SSL_CERT_FILE at that authority's PEM file."""

from __future__ import annotations

import ssl

TRUST_HINT = "to trust it, set SSL_CERT_FILE to the PEM file of the certificate authority that signed it"


def tls_failure(exc: BaseException, url: str) -> str | None:
    """The sentence for an ssl error reaching `url`, or None when `exc` is not about TLS."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        why = exc.verify_message or "certificate verify failed"
        return f"the ComfyUI server at {url} has a certificate this computer does not trust ({why}); {TRUST_HINT}"
    if isinstance(exc, ssl.SSLError):
        if exc.reason == "WRONG_VERSION_NUMBER":  # a plain-HTTP server answered our TLS hello
            return (
                f"the server at {url} does not speak TLS; use its http:// address only on a network you trust"
            )
        return f"the TLS connection to the ComfyUI server at {url} failed ({exc.reason or exc})"
    return None
