"""A throwaway certificate authority and a server certificate for 127.0.0.1 / localhost, made at test time, for
FakeComfy's TLS mode. The openssl command line when it is there, else the `cryptography` package when it is
importable; neither: the caller skips, naming what is missing."""

from __future__ import annotations

import datetime
import shutil
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

LOOPBACK = ("IP:127.0.0.1", "DNS:localhost")
MISSING = "neither the openssl command nor the cryptography package is available to make a test certificate"


@dataclass(frozen=True, slots=True)
class TestCertificates:
    __test__ = False  # not a pytest class

    ca: Path  # the CA certificate (PEM) a client is told to trust
    cert: Path  # the server's certificate, signed by the CA, for IP 127.0.0.1 and DNS localhost
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, self.key)
        return context


def make_certificates(folder: Path, names: tuple[str, ...] = LOOPBACK) -> TestCertificates | None:
    """A CA and a server certificate valid for `names` in `folder`; None when no tool can make them."""
    certs = TestCertificates(folder / "ca.pem", folder / "server.pem", folder / "server.key")
    if shutil.which("openssl"):
        _with_openssl(folder, certs, names)
        return certs
    try:
        import cryptography  # noqa: F401
    except ImportError:
        return None
    _with_cryptography(certs, names)
    return certs


def _run(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _with_openssl(folder: Path, certs: TestCertificates, names: tuple[str, ...]) -> None:
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _run("req", "-x509", *ec, "-keyout", "ca.key", "-out", certs.ca.name, "-days", "2",
         "-subj", "/CN=SD35 Studio test CA", "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=folder)  # fmt: skip
    _run("req", *ec, "-keyout", certs.key.name, "-out", "server.csr", "-subj", "/CN=localhost", cwd=folder)
    (folder / "server.ext").write_text(
        f"subjectAltName={','.join(names)}\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n"
    )
    _run("x509", "-req", "-in", "server.csr", "-CA", certs.ca.name, "-CAkey", "ca.key", "-CAcreateserial",
         "-days", "2", "-extfile", "server.ext", "-out", certs.cert.name, cwd=folder)  # fmt: skip


def _with_cryptography(certs: TestCertificates, names: tuple[str, ...]) -> None:
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "SD35 Studio test CA")])

    def builder(subject, public_key):
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(ca_name)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=2))
        )

    ca = (
        builder(ca_name, ca_key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .sign(ca_key, hashes.SHA256())
    )
    server_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    alt = [
        x509.IPAddress(ipaddress.ip_address(value)) if kind == "IP" else x509.DNSName(value)
        for kind, value in (name.split(":", 1) for name in names)
    ]
    cert = (
        builder(server_name, key.public_key())
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    certs.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    certs.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    certs.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def certificates_or_skip(tmp_path: Path) -> TestCertificates:
    """The `certs` fixture's body: a test CA and server certificate under tmp_path/tls, or skip naming the tool."""
    import pytest

    (tmp_path / "tls").mkdir()
    made = make_certificates(tmp_path / "tls")
    if made is None:
        pytest.skip(MISSING)
    return made
