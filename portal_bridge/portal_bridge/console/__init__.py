"""The browser operator console (ROS-free): page config, keymap, token policy and HTTP server.

The page (TypeScript, ``portal_bridge/web/console``) is a Portal operator of its own; this package
serves it. The ``console`` node (:mod:`portal_bridge.nodes.console`) wires it to parameters.
"""
