"""A throwaway self-signed certificate, so the emulator can serve HTTPS that clients refuse.

Made with the openssl command line at start-up (no crypto library needed) for 127.0.0.1,
::1 and localhost. A client that does not trust it fails the handshake: the TLSError row of
the failure table. Tests that want a working HTTPS call trust ``cert`` explicitly.
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class SelfSigned:
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        return context


def self_signed(directory: Path, common_name: str = "directservice-emulator") -> SelfSigned:
    """Write a one-day certificate and key into `directory` (which must exist)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError("TLS needs the openssl command, which is not on PATH")
    cert, key = directory / "emulator.crt", directory / "emulator.key"
    subprocess.run(
        [
            openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-keyout", str(key), "-out", str(cert), "-subj", f"/CN={common_name}",
            "-addext", "subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )  # fmt: skip
    key.chmod(0o600)
    return SelfSigned(cert=cert, key=key)
