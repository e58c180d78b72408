"""The two Portal roles on top of a room session.

The Robot publishes, gates actions and owns the active-operator pointer; the Operator synchronizes
observations and sends actions. They share the action inbox; ``sdk_video`` is the one module
allowed to know the SDK's video internals.
"""
