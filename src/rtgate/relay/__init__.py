"""The cloud relay: models routed to an Azure OpenAI or OpenAI GA upstream (docs/relay.md).

:mod:`.upstream` opens the upstream socket (URL, credential, limits, connect faults);
:mod:`.session` joins it to the client socket and decides how the session ends;
:mod:`.splice` is the spliced (zero-parse) data path of GA sessions, with :mod:`.wire`
its frame scanner and :mod:`.rawlink` its raw upstream connection;
:mod:`.preview` speaks Preview to old clients in front of it; :mod:`.endpoint` is the
branch of the Realtime WebSocket endpoint that runs it. :mod:`.config` is an upstream's
configuration and :mod:`.metrics` the relay's metric families. Nothing here imports
:mod:`rtgate.server`, which builds the relay (docs/architecture.md, Layers).
"""
