"""Service hosts: TLS listeners on 0.0.0.0:443 and [::]:443 answer every address of
their namespace, IPv4 and IPv6 (the Power Platform service host, the CDN host), with a certificate
made at lab start for every catalog name.

Run inside a namespace:  python -m tests.lab.services --cert C --key K --ready F
A TLS client gets a tiny HTTP/1.1 200 naming the host and address it reached,
so a test can tell which host really answered.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import ssl
import subprocess

from . import plan

HANDSHAKE_TIMEOUT_S = 10
_SNI: dict[int, str] = {}  # SSLObject id -> server name the client asked for
READ_TIMEOUT_S = 5


def certificate_names() -> list[str]:
    names = set()
    for t in plan.targets():
        names.add(t.name)
        names.update(t.cname_chain)
    names.update(
        {"*.azureedge.net", "*.azurefd.net", "*.crm4.dynamics.com", "*.api.crm4.dynamics.com"}
    )
    return sorted(names)


def make_certificate(cert: str, key: str) -> None:
    """Self-signed P-256 certificate with every catalog name (openssl: ~20 ms)."""
    san = ",".join(f"DNS:{n}" for n in certificate_names())
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "7",
            "-subj",
            "/CN=erpath-lab service",
            "-keyout",
            key,
            "-out",
            cert,
            "-addext",
            f"subjectAltName={san}",
        ],
        check=True,
        capture_output=True,
    )


async def _handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str) -> None:
    sslobj = writer.get_extra_info("ssl_object")
    local = writer.get_extra_info("sockname")[0]
    sni = _SNI.pop(id(sslobj), None) or "-"
    try:
        await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT_S)
        body = f"erpath-lab {host} {local} {sni}\n".encode()
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        await writer.drain()
    except (
        TimeoutError,
        asyncio.IncompleteReadError,
        asyncio.LimitOverrunError,
        ConnectionError,
        ssl.SSLError,
    ):
        pass  # TCP/TLS probes that hang up early are normal here
    finally:
        with contextlib.suppress(Exception):
            writer.close()


async def serve(cert: str, key: str, host: str, ready: str | None, port: int = 443) -> None:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    # The server side only learns SNI through this callback.
    ctx.sni_callback = lambda obj, name, _ctx: _SNI.__setitem__(id(obj), name or "-")
    server = await asyncio.start_server(
        lambda r, w: _handle(r, w, host),
        ["0.0.0.0", "::"],  # one socket per family (asyncio sets IPV6_V6ONLY)
        port,
        ssl=ctx,
        ssl_handshake_timeout=HANDSHAKE_TIMEOUT_S,
        backlog=512,
    )
    if ready:
        with open(ready, "w") as f:
            f.write(f"{os.getpid()}\n")
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--host", default="svc")
    p.add_argument("--ready")
    p.add_argument("--port", type=int, default=443)
    args = p.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.cert, args.key, args.host, args.ready, args.port))


if __name__ == "__main__":
    main()
