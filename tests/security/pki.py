"""A throw-away PKI made with Debian's openssl: two CAs, a server certificate
for 127.0.0.1 and client certificates whose CN is an agent id."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.collector.realparts import binary

EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


def _openssl(*args: str) -> None:
    subprocess.run([binary("openssl"), *args], check=True, capture_output=True, timeout=60)


def ca(d: Path, name: str) -> Path:
    _openssl(
        "req",
        "-x509",
        *EC,
        "-keyout",
        str(d / f"{name}.key"),
        "-out",
        str(d / f"{name}.crt"),
        "-days",
        "1",
        "-subj",
        f"/CN=erpath test {name}",
    )
    return d / f"{name}.crt"


def issue(d: Path, ca_name: str, name: str, cn: str, ext: str) -> tuple[Path, Path]:
    """(certificate, key) signed by `ca_name`."""
    (d / f"{name}.ext").write_text(ext + "\n")
    _openssl(
        "req",
        *EC,
        "-keyout",
        str(d / f"{name}.key"),
        "-out",
        str(d / f"{name}.csr"),
        "-subj",
        f"/CN={cn}",
    )
    _openssl(
        "x509",
        "-req",
        "-in",
        str(d / f"{name}.csr"),
        "-CA",
        str(d / f"{ca_name}.crt"),
        "-CAkey",
        str(d / f"{ca_name}.key"),
        "-CAcreateserial",
        "-out",
        str(d / f"{name}.crt"),
        "-days",
        "1",
        "-extfile",
        str(d / f"{name}.ext"),
    )
    return d / f"{name}.crt", d / f"{name}.key"


def make(d: Path) -> dict[str, Path]:
    ca(d, "ca")
    ca(d, "other-ca")  # trusted by nobody: the agent's "wrong CA"
    paths = {"ca": d / "ca.crt", "other-ca": d / "other-ca.crt"}
    paths["server.crt"], paths["server.key"] = issue(
        d, "ca", "server", "collector", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth"
    )
    for agent in ("br-1", "br-2"):
        paths[f"{agent}.crt"], paths[f"{agent}.key"] = issue(
            d, "ca", agent, agent, "extendedKeyUsage=clientAuth"
        )
    # Same CN, but from a CA the collector does not trust.
    paths["rogue.crt"], paths["rogue.key"] = issue(
        d, "other-ca", "rogue", "br-1", "extendedKeyUsage=clientAuth"
    )
    # The agent id in a SAN (URI) with an unrelated CN.
    paths["san.crt"], paths["san.key"] = issue(
        d, "ca", "san", "host-17.example", "subjectAltName=URI:br-1\nextendedKeyUsage=clientAuth"
    )
    return paths
