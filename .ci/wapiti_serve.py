"""Serve both apps over https on loopback for the wapiti scan (.ci/wapiti):

    .venv/bin/python .ci/wapiti_serve.py WORK_DIR SITE_PORT SANDBOX_PORT

Over https as in production: wapiti reports a password field on a plain-http page as a high finding,
and HSTS and Secure cookies only show over https. A self-signed certificate for 127.0.0.1 is made
for the run (WORK_DIR/cert.pem). The per-IP rate limits are off so that the attacks reach the views.
Runs until SIGTERM.
"""
from __future__ import annotations

import datetime
import ipaddress
import signal
import ssl
import sys
import threading
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from werkzeug.serving import make_server

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from demo.cli import PathOnlyRequestHandler  # noqa: E402
from demo.config import load_config  # noqa: E402
from demo.sandbox import create_app as create_sandbox  # noqa: E402
from demo.site import create_app as create_site  # noqa: E402


def self_signed(work: Path) -> ssl.SSLContext:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                        x509.DNSName("localhost")]), critical=False)
            .sign(key, hashes.SHA256()))
    (work / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (work / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                     serialization.NoEncryption()))
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(work / "cert.pem", work / "key.pem")
    return tls


def main() -> None:
    work, site_port, sandbox_port = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    tls = self_signed(work)
    settings = load_config({
        "instance_path": str(work / "instance"), "site_port": site_port, "sandbox_port": sandbox_port,
        "site_url": f"https://127.0.0.1:{site_port}", "sandbox_url": f"https://127.0.0.1:{sandbox_port}",
        "ratelimit_enabled": False, "sandbox_webhooks": False,
    }, env={})
    apps = ((site_port, create_site(settings)), (sandbox_port, create_sandbox(settings)))
    servers = [make_server("127.0.0.1", port, app, threaded=True, ssl_context=tls,
                           request_handler=PathOnlyRequestHandler) for port, app in apps]
    for srv in servers:
        threading.Thread(target=srv.serve_forever, daemon=True).start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    for srv in servers:
        srv.shutdown()


if __name__ == "__main__":
    main()
