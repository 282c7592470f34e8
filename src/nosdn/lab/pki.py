"""Certificates for a kube-apiserver the lab (or a test) runs: a CA, the server's serving
certificate, the admin's client certificate and the service-account signing key pair.

Made with `cryptography`, which every nosdn install already has (google-auth, under the GCE
backend's SDK, requires it); nosdn declares it because this module imports it. Keys are
ECDSA P-256 (fast to make) except the service-account key, RSA as kube-apiserver's token
signer expects by default. Nothing here is secret beyond the lab: the files live in the lab's
directory (tmpfs) and the server they serve is reachable only from the lab's namespaces.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


@dataclass(frozen=True, slots=True)
class Pki:
    """The files under one directory: ``ca.crt``, ``server.{crt,key}``, ``admin.{crt,key}``,
    ``sa.key``/``sa.pub``."""

    root: Path

    @property
    def ca(self) -> Path:
        return self.root / "ca.crt"

    def cert(self, who: str) -> Path:
        return self.root / f"{who}.crt"

    def key(self, who: str) -> Path:
        return self.root / f"{who}.key"

    @property
    def sa_key(self) -> Path:
        return self.root / "sa.key"

    @property
    def sa_pub(self) -> Path:
        return self.root / "sa.pub"

    def exists(self) -> bool:
        return self.ca.exists()


def _pem_key(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def _cert(
    cn: str,
    key: PrivateKey,
    issuer: tuple[x509.Certificate, PrivateKey] | None,
    *,
    days: int,
    org: str | None = None,
    sans: Sequence[str] = (),
    server: bool = False,
) -> x509.Certificate:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attrs.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    name = x509.Name(attrs)
    now = datetime.datetime.now(datetime.UTC)
    ca = issuer is None
    issuer_name, issuer_key = (name, key) if issuer is None else (issuer[0].subject, issuer[1])
    b = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        usage = x509.KeyUsage(
            digital_signature=True,
            content_commitment=False,
            key_encipherment=False,
            data_encipherment=False,
            key_agreement=False,
            key_cert_sign=True,
            crl_sign=True,
            encipher_only=False,
            decipher_only=False,
        )
        b = b.add_extension(usage, critical=True)
    else:
        eku = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        b = b.add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
    if sans:
        alt: list[x509.GeneralName] = []
        for s in sans:
            try:
                alt.append(x509.IPAddress(ipaddress.ip_address(s)))
            except ValueError:
                alt.append(x509.DNSName(s))
        b = b.add_extension(x509.SubjectAlternativeName(alt), critical=False)
    return b.sign(issuer_key, hashes.SHA256())


def make_pki(root: Path, server_sans: Sequence[str], *, days: int = 30) -> Pki:
    """Write a fresh CA, the server's certificate for ``server_sans`` (addresses or names),
    the admin's client certificate (group ``system:masters``) and the service-account keys."""
    pki = Pki(root)
    root.mkdir(parents=True, exist_ok=True)
    pem = serialization.Encoding.PEM
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("nosdn-lab-ca", ca_key, None, days=days)
    pki.ca.write_bytes(ca.public_bytes(pem))
    for who, cn, org, sans, server in (
        ("server", "kube-apiserver", None, server_sans, True),
        ("admin", "admin", "system:masters", (), False),
    ):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _cert(cn, key, (ca, ca_key), days=days, org=org, sans=sans, server=server)
        pki.cert(who).write_bytes(cert.public_bytes(pem))
        pki.key(who).write_bytes(_pem_key(key))
        pki.key(who).chmod(0o600)
    sa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pki.sa_key.write_bytes(_pem_key(sa))
    pki.sa_key.chmod(0o600)
    pki.sa_pub.write_bytes(
        sa.public_key().public_bytes(pem, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return pki
