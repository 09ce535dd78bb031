"""Writes a test PKI into DIR (Python `cryptography`): two CAs and certificates signed by them.

    python3 make_certs.py DIR

ca.pem                       the trusted CA
server.pem / server.key      CN=localhost, SAN DNS localhost + IP 127.0.0.1 (signed by ca)
alice.pem / alice.key        CN=alice, SAN URI spiffe://example.org/alice (signed by ca)
bob.pem / bob.key            CN=bob (signed by ca)
mallory.pem / mallory.key    CN=alice, signed by other-ca.pem (an untrusted CA)
"""

import datetime
import ipaddress
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

NOW = datetime.datetime.now(datetime.timezone.utc)


def name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn), x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Weir tests")])


def write(out, stem, cert, key):
    (out / f"{stem}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (out / f"{stem}.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))


def ca(cn):
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(name(cn)).issuer_name(name(cn))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(NOW - datetime.timedelta(days=1)).not_valid_after(NOW + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
            .sign(key, hashes.SHA256()))
    return cert, key


def leaf(issuer, issuer_key, cn, sans, usage):
    key = ec.generate_private_key(ec.SECP256R1())
    b = (x509.CertificateBuilder().subject_name(name(cn)).issuer_name(issuer.subject)
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(NOW - datetime.timedelta(days=1)).not_valid_after(NOW + datetime.timedelta(days=30))
         .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
         .add_extension(x509.ExtendedKeyUsage([usage]), critical=False))
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return b.sign(issuer_key, hashes.SHA256()), key


def main(out):
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    root, root_key = ca("Weir test CA")
    other, other_key = ca("Untrusted CA")
    (out / "ca.pem").write_bytes(root.public_bytes(serialization.Encoding.PEM))
    (out / "other-ca.pem").write_bytes(other.public_bytes(serialization.Encoding.PEM))
    write(out, "server", *leaf(root, root_key, "localhost",
                               [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
                               ExtendedKeyUsageOID.SERVER_AUTH))
    write(out, "alice", *leaf(root, root_key, "alice", [x509.UniformResourceIdentifier("spiffe://example.org/alice")],
                              ExtendedKeyUsageOID.CLIENT_AUTH))
    write(out, "bob", *leaf(root, root_key, "bob", [], ExtendedKeyUsageOID.CLIENT_AUTH))
    write(out, "mallory", *leaf(other, other_key, "alice", [], ExtendedKeyUsageOID.CLIENT_AUTH))


if __name__ == "__main__":
    main(sys.argv[1])
