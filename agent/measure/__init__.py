"""Measuring: DNS, routes, TCP probes and traceroute. Needs the network, root for raw sockets, and dnspython (packets and rtnetlink are packed here with struct)."""
