"""Test certificates, made by the openssl command line as an operator would.

One CA and four server certificates, each for localhost and 127.0.0.1
unless said otherwise: "valid" (90 days), "expiring" (5 days from now),
"expired" (ended 3 days ago) and "wrong_name" (for wrong.example and
*.other.example). `openssl x509 -days` cannot backdate a certificate, so
they are signed with `openssl ca`, whose -startdate/-enddate can.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from cryptography import x509

KINDS = ("valid", "expiring", "expired", "wrong_name")
LOCAL_NAMES = "DNS:localhost,IP:127.0.0.1"

_CA_CONFIG = """\
[ ca ]
default_ca = test_ca

[ test_ca ]
dir = {dir}
database = $dir/index.txt
new_certs_dir = $dir/issued
serial = $dir/serial
default_md = sha256
policy = any_name
unique_subject = no
copy_extensions = none

[ any_name ]
commonName = supplied
"""


@dataclass(frozen=True)
class Certs:
    ca: Path  # the CA's certificate: a ca_file
    dir: Path

    def cert(self, kind: str) -> Path:
        return self.dir / f"{kind}.pem"

    def key(self, kind: str) -> Path:
        return self.dir / f"{kind}.key"

    def not_after(self, kind: str) -> datetime:
        pem = self.cert(kind).read_bytes()
        return x509.load_pem_x509_certificate(pem).not_valid_after_utc

    def days_left(self, kind: str, now: datetime) -> float:
        return (self.not_after(kind) - now).total_seconds() / 86400


def _openssl(*args: str | Path, cwd: Path) -> None:
    subprocess.run(["openssl", *map(str, args)], cwd=cwd, check=True, capture_output=True)


def _stamp(when: datetime) -> str:
    return when.strftime("%Y%m%d%H%M%SZ")


def make_certs(directory: Path) -> Certs:
    """The CA and the four certificates, in `directory`. EC keys: quick to make."""
    (directory / "issued").mkdir()
    (directory / "index.txt").write_text("")
    (directory / "serial").write_text("1000\n")
    (directory / "ca.cnf").write_text(_CA_CONFIG.format(dir=directory))
    curve = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl(
        "req", "-x509", *curve, "-keyout", "ca.key", "-out", "ca.pem", "-days", "365",
        "-subj", "/CN=vigil test CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=directory,
    )  # fmt: skip
    now = datetime.now(timezone.utc).replace(microsecond=0)
    day = timedelta(days=1)
    plans = {
        "valid": (now - day, now + 90 * day, LOCAL_NAMES),
        "expiring": (now - day, now + 5 * day, LOCAL_NAMES),
        "expired": (now - 30 * day, now - 3 * day, LOCAL_NAMES),
        "wrong_name": (now - day, now + 90 * day, "DNS:wrong.example,DNS:*.other.example"),
    }
    for kind, (start, end, names) in plans.items():
        (directory / f"{kind}.ext").write_text(
            "basicConstraints = critical,CA:FALSE\n"
            "keyUsage = critical,digitalSignature\n"
            "extendedKeyUsage = serverAuth\n"
            "authorityKeyIdentifier = keyid\n"
            f"subjectAltName = {names}\n"
        )
        _openssl(
            "req", "-new", *curve, "-keyout", f"{kind}.key", "-out", f"{kind}.csr",
            "-subj", f"/CN={kind} test server",
            cwd=directory,
        )  # fmt: skip
        _openssl(
            "ca", "-batch", "-notext", "-config", "ca.cnf", "-cert", "ca.pem",
            "-keyfile", "ca.key", "-in", f"{kind}.csr", "-out", f"{kind}.pem",
            "-startdate", _stamp(start), "-enddate", _stamp(end), "-extfile", f"{kind}.ext",
            cwd=directory,
        )  # fmt: skip
    return Certs(ca=directory / "ca.pem", dir=directory)
