"""The two Portal roles on top of a room session: the Robot (publishes, gates actions, owns the
active-operator pointer) and the Operator (synchronizes observations, sends actions), plus the
action inbox they share and the one module allowed to know the SDK's video internals.
"""
