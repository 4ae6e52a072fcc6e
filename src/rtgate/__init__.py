"""rtgate: a self-hosted server for the OpenAI / Azure OpenAI Realtime API (GA protocol)."""

__version__ = "0.1.0"
