"""The lab's DNS servers: dnspython's message API behind asyncio UDP/TCP sockets.

One process serves several addresses, each with a view:
  public  the catalog, CNAME chains to the CDN, PTR names, origin.asn.cymru.com
  split   the public data with SPLIT_OVERRIDES (private Dataverse address ...)
  bad     the public data, plus misbehaviour on trigger names and on demand
          (the mode file: normal | servfail | silent | tc)

Run inside a namespace:  python -m tests.lab.dnsserver --serve public=ADDR ...
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import struct

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from . import dnsdata
from .dnsdata import BAD_ZONE

MAX_CHASE = 2 * dnsdata.CHAIN_LENGTH + 10


class Responder:
    def __init__(self, view: str, mode_file: str | None = None) -> None:
        self.view = view
        self.zone = dnsdata.build(view).records
        self.mode_file = mode_file
        self._mode = ("normal", 0.0)

    def mode(self) -> str:
        if self.view != "bad" or not self.mode_file:
            return "normal"
        try:
            mtime = os.stat(self.mode_file).st_mtime
        except FileNotFoundError:
            return "normal"
        if mtime != self._mode[1]:
            with open(self.mode_file) as f:
                self._mode = (f.read().strip() or "normal", mtime)
        return self._mode[0]

    def respond(
        self, query: dns.message.Message, tcp: bool
    ) -> tuple[dns.message.Message | None, str]:
        """Returns (response or None for silence, how to send: normal|oversize|truncate)."""
        response = dns.message.make_response(query)
        response.flags |= dns.flags.RA
        if not query.question:
            response.set_rcode(dns.rcode.FORMERR)
            return response, "normal"
        q = query.question[0]
        qname = q.name.to_text(omit_final_dot=True).lower()
        if self.view == "bad":
            mode = self.mode()
            trigger = qname if qname.endswith(BAD_ZONE) else ""
            if mode == "silent" or trigger == f"silent.{BAD_ZONE}":
                return None, "normal"
            if mode == "servfail" or trigger == f"servfail.{BAD_ZONE}":
                response.set_rcode(dns.rcode.SERVFAIL)
                return response, "normal"
            if trigger == f"refused.{BAD_ZONE}":
                response.set_rcode(dns.rcode.REFUSED)
                return response, "normal"
            if not tcp and (mode == "tc" or trigger == f"tc.{BAD_ZONE}"):
                response.flags |= dns.flags.TC
                return response, "normal"
            if trigger == f"big.{BAD_ZONE}":
                self._fill(response, qname, q.rdtype)
                return response, "oversize"
        self._fill(response, qname, q.rdtype)
        return response, "truncate"

    def _fill(self, response: dns.message.Message, qname: str, rdtype: int) -> None:
        wanted = dns.rdatatype.to_text(rdtype)
        if wanted == "TXT":
            origin = dnsdata.lookup_txt_origin(qname)
            if origin is not None:
                self._add(response, qname, "TXT", (f'"{origin}"',))
                return
        name, seen = qname, set()
        for _ in range(MAX_CHASE):
            records = self.zone.get(name)
            if records is None:
                if name == qname:
                    response.set_rcode(dns.rcode.NXDOMAIN)
                return
            if wanted in records:
                values = records[wanted]
                if wanted == "TXT":
                    values = tuple(f'"{v}"' for v in values)
                self._add(response, name, wanted, values)
                return
            if "CNAME" not in records or wanted == "CNAME":
                return  # NODATA
            target = records["CNAME"][0]
            self._add(response, name, "CNAME", (target,))
            seen.add(name)
            name = target.rstrip(".").lower()
            if name in seen:
                return  # a loop: the chain as far as it goes, like a resolver gives up

    @staticmethod
    def _add(response: dns.message.Message, name: str, rtype: str, values: tuple[str, ...]) -> None:
        rrset = dns.rrset.from_text_list(
            dns.name.from_text(name), dnsdata.TTL, dns.rdataclass.IN, rtype, list(values)
        )
        response.answer.append(rrset)


def _wire(query: dns.message.Message, response: dns.message.Message, how: str) -> bytes:
    limit = max(512, query.payload) if query.edns >= 0 else 512
    if how == "oversize":
        # Deliberately ignores the client's payload size (dnspython would cap it).
        return response.to_wire(max_size=65535)
    try:
        return response.to_wire(max_size=limit)
    except dns.exception.TooBig:
        # A real server's behaviour: empty answer with TC set, retry over TCP.
        short = dns.message.make_response(query)
        short.flags |= dns.flags.RA | dns.flags.TC
        return short.to_wire(max_size=limit)


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, responder: Responder) -> None:
        self.responder = responder

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        try:
            query = dns.message.from_wire(data)
        except Exception:
            return  # not DNS: ignore like any server would
        response, how = self.responder.respond(query, tcp=False)
        if response is not None:
            self.transport.sendto(_wire(query, response, how), addr)


def _tcp_handler(responder: Responder):
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                length = struct.unpack("!H", await reader.readexactly(2))[0]
                query = dns.message.from_wire(await reader.readexactly(length))
                response, _how = responder.respond(query, tcp=True)
                if response is None:
                    continue
                wire = response.to_wire(max_size=65535)  # TCP: no EDNS payload cap
                writer.write(struct.pack("!H", len(wire)) + wire)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, dns.exception.DNSException):
            pass
        finally:
            writer.close()

    return handle


async def serve(
    bindings: list[tuple[str, str]], mode_file: str | None, ready: str | None, port: int = 53
) -> None:
    loop = asyncio.get_running_loop()
    servers = []
    for view, address in bindings:
        responder = Responder(view, mode_file)
        await loop.create_datagram_endpoint(lambda r=responder: _Udp(r), local_addr=(address, port))
        servers.append(await asyncio.start_server(_tcp_handler(responder), address, port))
    if ready:
        with open(ready, "w") as f:
            f.write(f"{os.getpid()}\n")
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for s in servers:
        s.close()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--serve", action="append", required=True, metavar="VIEW=ADDRESS")
    p.add_argument("--mode-file")
    p.add_argument("--ready")
    p.add_argument("--port", type=int, default=53)
    args = p.parse_args(argv)
    bindings = [tuple(s.split("=", 1)) for s in args.serve]
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(bindings, args.mode_file, args.ready, args.port))


if __name__ == "__main__":
    main()
