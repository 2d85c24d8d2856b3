"""Which certificates a server connection trusts, and TLS failures said as one sentence that tells the user what
to do, for the HTTP and the WebSocket half alike.

Certificates are always verified. By default the client trusts what OpenSSL trusts (the system store, or the file
SSL_CERT_FILE names, which REPLACES that store). SD35_ENGINE_CA_FILE ADDS one PEM file of certificate authorities
on top of the system store: a home server's own CA is trusted while public cloud servers stay trusted too. A server
in the engine list may name its own CA file (Settings ▸ Engines ▸ CA file…), added the same way for it alone."""

from __future__ import annotations

import ipaddress
import os
import ssl
import urllib.parse
from collections.abc import Mapping

from app.remote.errors import ServerUnreachable, TlsFailure

CA_FILE_ENV = "SD35_ENGINE_CA_FILE"
TRUST_HINT = (
    f"to trust it, set {CA_FILE_ENV} (or SSL_CERT_FILE) to the PEM file of the certificate authority that signed it, "
    "or choose that file with CA file… in Settings ▸ Engines"
)  # fmt: skip

_NAME_MISMATCH = {62, 64}  # X509_V_ERR_HOSTNAME_MISMATCH, X509_V_ERR_IP_ADDRESS_MISMATCH


_server_ca_files: dict[str, str] = {}  # base URL -> PEM path: the user's engine list keeps it current


def set_server_ca_files(ca_files: Mapping[str, str]) -> None:
    """The per-server CA files of the engine list (EngineList calls this whenever it loads or saves), so that
    every connection to those servers (a job, a pool, a ping, a test) trusts them."""
    global _server_ca_files
    _server_ca_files = {url: path for url, path in ca_files.items() if path}


def server_ca_file(url: str) -> str:
    """The CA file set for the server `url` belongs to ("" when none); `url` may be its ws(s)://…/ws address."""
    parts = urllib.parse.urlsplit(url)
    path = parts.path.rstrip("/")
    if parts.scheme in ("ws", "wss") and path.endswith("/ws"):
        path = path[: -len("/ws")]
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    return _server_ca_files.get(urllib.parse.urlunsplit((scheme, parts.netloc, path, "", "")), "")


def client_context(ca_file: str = "") -> ssl.SSLContext | None:
    """The context for https/wss: None means the libraries' own default (verified, OpenSSL's trust store).
    `ca_file` (a server's own CA file) and SD35_ENGINE_CA_FILE are both added on top of the system store.

    ServerUnreachable, in one sentence, when either names no readable PEM certificate."""
    env_path = os.environ.get(CA_FILE_ENV, "").strip()
    if not env_path and not ca_file:
        return None
    context = ssl.create_default_context()  # verification and host name checks on, the system store loaded
    if env_path:
        _load_ca(context, env_path, f"{CA_FILE_ENV} names {env_path}, which")
    if ca_file:
        _load_ca(context, ca_file, f"the server's CA file {ca_file}")
    return context


def check_ca_file(path: str) -> None:
    """ValueError in one sentence when `path` is not a readable PEM certificate file."""
    try:
        _load_ca(ssl.create_default_context(), path, f"{path}")
    except ServerUnreachable as exc:
        raise ValueError(str(exc)) from None


def _load_ca(context: ssl.SSLContext, path: str, subject: str) -> None:
    try:
        context.load_verify_locations(cafile=path)
    except (OSError, ssl.SSLError, ValueError) as exc:
        ssl_error = isinstance(exc, ssl.SSLError | ValueError)
        why = "no PEM certificate in it" if ssl_error else (exc.strerror or str(exc)).lower()
        raise ServerUnreachable(f"{subject} is not a readable certificate file ({why})") from None


CLEAR_TOKEN_WARNING = "the token travels unencrypted: use https:// outside a trusted network"


def token_in_clear(url: str) -> bool:
    """True when a token sent to `url` crosses a network unencrypted: plain http/ws to a host that is not this
    computer (loopback stays on the machine, so it is not warned about)."""
    parts = urllib.parse.urlsplit(
        url.strip() if "://" in url else "http://" + url.strip()
    )  # host:port is http
    if parts.scheme not in ("http", "ws"):
        return False
    host = (parts.hostname or "").rstrip(".").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve anywhere
        return True


def tls_error(exc: BaseException, url: str) -> TlsFailure | None:
    """The error to raise for an ssl failure reaching `url` (its sentence and kind), or None when `exc` is not
    about TLS."""
    found = _classify(exc, url)
    return None if found is None else TlsFailure(found[1], found[0])


def _classify(exc: BaseException, url: str) -> tuple[str, str] | None:
    if isinstance(exc, ssl.SSLCertVerificationError):
        if (
            exc.verify_code in _NAME_MISMATCH
        ):  # a trusted certificate, made for another name: no CA file helps
            return "wrong_name", (
                f"the certificate of the ComfyUI server at {url} is not valid for that address "
                f"({exc.verify_message}); use a host name the certificate was made for"
            )
        why = exc.verify_message or "certificate verify failed"
        return "untrusted", (
            f"the ComfyUI server at {url} has a certificate this computer does not trust ({why}); {TRUST_HINT}"
        )
    if isinstance(exc, ssl.SSLError):
        if exc.reason == "WRONG_VERSION_NUMBER":  # a plain-HTTP server answered our TLS hello
            return "no_tls", (
                f"the server at {url} does not speak TLS; use its http:// address only on a network you trust"
            )
        return "failed", f"the TLS connection to the ComfyUI server at {url} failed ({exc.reason or exc})"
    return None
