"""Test certificates made with ``openssl``: a self-signed server certificate, or a test CA and
certificates it signs (server certificates for 127.0.0.1, client certificates by common name)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

__all__ = ["self_signed", "CertAuthority"]

_SERVER_SAN = "subjectAltName=IP:127.0.0.1,DNS:localhost"
#: an EC P-256 key: made in milliseconds, where a 2048-bit RSA key takes about half a second
_NEW_KEY = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1")


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def self_signed(directory: Path) -> tuple[Path, Path]:
    """``(key, cert)`` of a self-signed certificate for 127.0.0.1, valid two days."""
    key, cert = directory / "key.pem", directory / "cert.pem"
    _openssl("req", "-x509", *_NEW_KEY, "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
             "-addext", _SERVER_SAN, "-keyout", str(key), "-out", str(cert))
    return key, cert


@dataclass(frozen=True)
class CertAuthority:
    """A test certificate authority in ``directory`` (``ca.pem``, ``ca.key``)."""

    directory: Path

    @property
    def cert(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def key(self) -> Path:
        return self.directory / "ca.key"

    @classmethod
    def create(cls, directory: Path) -> "CertAuthority":
        directory.mkdir(parents=True, exist_ok=True)
        ca = cls(directory)
        _openssl("req", "-x509", *_NEW_KEY, "-nodes", "-days", "2", "-subj", "/CN=CityEye test CA",
                 "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                 "-keyout", str(ca.key), "-out", str(ca.cert))
        return ca

    def issue(self, name: str, common_name: str, server: bool = False) -> tuple[Path, Path]:
        """``(cert, key)`` signed by this CA; ``server``: for 127.0.0.1 / localhost."""
        key, csr, cert = (self.directory / f"{name}.{ext}" for ext in ("key", "csr", "pem"))
        ext = self.directory / f"{name}.ext"
        ext.write_text((_SERVER_SAN + "\nextendedKeyUsage=serverAuth\n") if server else "extendedKeyUsage=clientAuth\n")
        _openssl("req", *_NEW_KEY, "-nodes", "-subj", f"/CN={common_name}", "-keyout", str(key),
                 "-out", str(csr))
        _openssl("x509", "-req", "-in", str(csr), "-CA", str(self.cert), "-CAkey", str(self.key),
                 "-CAcreateserial", "-days", "2", "-extfile", str(ext), "-out", str(cert))
        return cert, key
