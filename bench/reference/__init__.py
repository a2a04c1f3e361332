"""Channels tutorial (part 3) chat server, kept verbatim as the performance baseline."""
