"""Certificates for TLS servers on loopback: a private CA and the certificates it signs.

    ca = CertificateAuthority.create("opskit lab CA")
    good = ca.issue("site.test")                       # valid now, for site.test
    wrong = ca.issue("wrong.test")                     # valid, but for another name
    expired = ca.issue("site.test", valid_days=(-30, -1))
    ca.write_pem(dir / "ca.pem"); good.write(dir, "site")   # → site.crt, site.key

Built with the `cryptography` package (a paramiko dependency, so always installed).
EC P-256 keys: generating one takes a millisecond, an RSA key up to a second.
The extensions are the ones OpenSSL's strict verification (X509_STRICT) wants.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["CertificateAuthority", "KeyPair"]


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _subject_alt_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


@dataclass(frozen=True)
class KeyPair:
    """A certificate and its private key."""

    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def cert_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())

    def write(self, directory: Path, stem: str) -> tuple[Path, Path]:
        """Write STEM.crt and STEM.key (0600) into `directory`; returns their paths."""
        directory.mkdir(parents=True, exist_ok=True)
        cert, key = directory / f"{stem}.crt", directory / f"{stem}.key"
        cert.write_bytes(self.cert_pem)
        # created 0600 rather than chmod-ed afterwards: the key is never readable by others
        descriptor = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "wb") as file:
            file.write(self.key_pem)
        return cert, key


@dataclass(frozen=True)
class CertificateAuthority:
    """A self-signed root that issues server certificates."""

    root: KeyPair

    @classmethod
    def create(cls, common_name: str = "opskit lab CA") -> "CertificateAuthority":
        key = _new_key()
        now = _now()
        certificate = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(_name(common_name))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        return cls(KeyPair(certificate, key))

    def issue(self, hostname: str, valid_days: tuple[int, int] = (-1, 30)) -> KeyPair:
        """A server certificate for `hostname` (a DNS name or an IP address), valid from
        now + valid_days[0] to now + valid_days[1] days (negative: in the past)."""
        key = _new_key()
        now = _now()
        issuer_key = self.root.key.public_key()
        certificate = (
            x509.CertificateBuilder()
            .subject_name(_name(hostname))
            .issuer_name(self.root.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now + datetime.timedelta(days=valid_days[0]))
            .not_valid_after(now + datetime.timedelta(days=valid_days[1]))
            .add_extension(x509.SubjectAlternativeName([_subject_alt_name(hostname)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key), critical=False)
            .sign(self.root.key, hashes.SHA256())
        )
        return KeyPair(certificate, key)

    def write_pem(self, path: Path) -> Path:
        """The CA certificate alone: what a client trusts (tls.ca_bundle, REQUESTS_CA_BUNDLE)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(self.root.cert_pem)
        return path
