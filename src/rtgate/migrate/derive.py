"""Derivers: turn a rule's regex match into template fields and the fix for it.

A deriver is named by ``Rule.derive_name`` and returns extra fields for the message,
change and fix templates. Special keys: ``fix`` set to ``None`` withholds the fix for this
occurrence (the change is reported, not applied); ``span`` (``"start:end"``) replaces a
different range than the whole match.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final

from rtgate.protocol.dialects import PREVIEW_AUDIO_FORMATS, PREVIEW_CONTENT_TYPES, SERVER_EVENT_RENAMES

_SIMPLE_VALUE = re.compile(r"[\w.\-]*|\$\{\w+\}|\{[A-Za-z_]\w*\}")

Deriver = Callable[[re.Match[str], str], dict[str, str | None]]


def _event_renamed(m: re.Match[str], text: str) -> dict[str, str | None]:
    ga = SERVER_EVENT_RENAMES[m["name"]]
    # The GA name is in the file too: the code already handles both dialects (a handler
    # per name, `in (old, new)`) or maps one to the other (a Preview bridge's table).
    # Nothing breaks on GA, and renaming would create a duplicate case.
    if re.search(rf"""\\?["'`](?:server\.|client\.)?{re.escape(ga)}\\?["'`]""", text):
        return {"ga": ga, "drop": "GA name handled in the same file"}
    return {"ga": ga, "pre": m["pre"] or ""}


def _split_query(query: str) -> list[tuple[str, str]]:
    pairs = []
    for part in query.split("&"):
        key, _, value = part.partition("=")
        pairs.append((key, value))
    return pairs


def _join_query(pairs: list[tuple[str, str]]) -> str:
    return "&".join(f"{k}={v}" if v or k else "" for k, v in pairs)


def _safe_to_drop(value: str) -> bool:
    """Dropping ``api-version=<value>`` leaves formatting arguments in place."""
    return _SIMPLE_VALUE.fullmatch(value) is not None


def _preview_path(m: re.Match[str], text: str) -> dict[str, str | None]:
    pairs = _split_query(m["query"] or "")
    keys = [k for k, _ in pairs]
    deployment = next((v for k, v in pairs if k == "deployment"), None)
    version = next((v for k, v in pairs if k == "api-version"), "")
    if deployment is None or "model" in keys or not _safe_to_drop(version):
        return {"fix": None}
    rest = [(k, v) for k, v in pairs if k not in ("api-version", "deployment")]
    query = _join_query([("model", deployment), *rest])
    return {"fix": f"/openai/v1/realtime?{query}"}


def _ga_query(m: re.Match[str], text: str) -> dict[str, str | None]:
    pairs = _split_query(m["query"])
    keys = [k for k, _ in pairs]
    version = next((v for k, v in pairs if k == "api-version"), None)
    if version is not None:
        if not _safe_to_drop(version):
            return {"fix": None}
        rest = [(k, v) for k, v in pairs if k != "api-version"]
    elif "model" in keys:
        return {"fix": None, "change": "drop the deployment parameter: model= is already set"}
    else:
        rest = [("model" if k == "deployment" else k, v) for k, v in pairs]
    query = _join_query(rest)
    return {"fix": m["path"] + (f"?{query}" if query else "")}


def _remove_element(m: re.Match[str], text: str) -> dict[str, str | None]:
    """Remove a list element or dict entry with one neighbouring comma (and a blank line)."""
    start, end = m.start(), m.end()
    after = re.compile(r"[ \t]*,[ \t]*").match(text, end)
    if after:
        end = after.end()
    else:
        before = re.search(r",\s*\Z", text[max(0, start - 200) : start])
        if before:
            start -= len(before.group())
    line_start = text.rfind("\n", 0, start) + 1
    nl = re.compile(r"[ \t]*(?:\r?\n|\Z)").match(text, end)
    if nl and not text[line_start:start].strip():
        start, end = line_start, nl.end()
    return {"span": f"{start}:{end}", "fix": ""}


def _remove_header(m: re.Match[str], text: str) -> dict[str, str | None]:
    """Remove a header entry (``"OpenAI-Beta": …`` or ``"OpenAI-Beta: …"``), never call
    arguments (``h.add("OpenAI-Beta", …)`` would become ``h.add()``)."""
    if m["sep"] in (",", "="):
        return {"fix": None}
    return _remove_element(m, text)


def _python_beta(m: re.Match[str], text: str) -> dict[str, str | None]:
    if m["what"] == "connect":
        return {"fix": ".realtime.connect"}
    return {"fix": None}


def _node_beta_import(m: re.Match[str], text: str) -> dict[str, str | None]:
    if m["mod"] in ("websocket", "ws") and not m["res"]:
        return {"fix": f"{m['q']}openai/realtime/{m['mod']}{m['q']}"}
    return {"fix": None}


def _audio_format(m: re.Match[str], text: str) -> dict[str, str | None]:
    q = m["q"]
    fmt = PREVIEW_AUDIO_FORMATS[m["fmt"]]
    body = ", ".join(
        f"{q}{k}{q}: " + (f"{q}{v}{q}" if isinstance(v, str) else str(v)) for k, v in fmt.items()
    )
    return {"ga": "{" + body + "}", "span": f"{m.start('v')}:{m.end('v')}"}


_REALTIME_CONTEXT = re.compile(
    r"realtime|response\.(?:output_item|(?:output_)?audio)\.|conversation\.item\.|input_audio_buffer\.",
    re.I,
)
_REALTIME_PATH = re.compile(r"/realtime\b(?!/client_secrets)")


def _content_compare(m: re.Match[str], text: str) -> dict[str, str | None]:
    """Only in Realtime code, and not on the parts of response.content_part.* events."""
    line_start = text.rfind("\n", 0, m.start()) + 1
    if "content_part" in text[line_start : m.end()] or not _REALTIME_CONTEXT.search(text):
        return {"drop": "not Realtime item content"}
    return {"new": PREVIEW_CONTENT_TYPES[m["old"]], "span": f"{m.start('v')}:{m.end('v')}"}


def _realtime_url_param(m: re.Match[str], text: str) -> dict[str, str | None]:
    """Only where the file builds a realtime WebSocket URL."""
    if not _REALTIME_PATH.search(text):
        return {"drop": "no realtime URL in the file"}
    return {}


DERIVERS: Final[dict[str, Deriver]] = {
    "content_compare": _content_compare,
    "realtime_url_param": _realtime_url_param,
    "audio_format": _audio_format,
    "event_renamed": _event_renamed,
    "preview_path": _preview_path,
    "ga_query": _ga_query,
    "remove_element": _remove_element,
    "remove_header": _remove_header,
    "python_beta": _python_beta,
    "node_beta_import": _node_beta_import,
}
