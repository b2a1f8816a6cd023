"""The agent as a service: the run loop, the spool, the sender, sequence numbers and local metrics."""
