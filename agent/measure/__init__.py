"""Measuring: DNS, routes, TCP probes and traceroute. Needs the network, root for raw sockets, and scapy, pyroute2, dnspython."""
