"""The ASGI WebSocket edge shared by the server and the relay.

:mod:`.hooks` names the connection hooks the server's uvicorn protocol offers in
``scope["extensions"]`` and the interfaces an app uses them through (the server implements
them in :mod:`rtgate.server.ws_protocol`; the relay uses them); :mod:`.close` closes a
client socket with a deadline; :mod:`.channel` is a session's text channel over a
Starlette WebSocket. Nothing here imports another rtgate package (docs/architecture.md,
Layers).
"""
