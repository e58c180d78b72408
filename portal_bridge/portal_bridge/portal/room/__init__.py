"""A participant in a LiveKit room: connection, reconnects, roster, RTT, RPC, streams, send queues.

What both Portal roles share and nothing role-specific: :mod:`.session` composes the parts.
"""
