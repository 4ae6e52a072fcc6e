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

from rtgate.protocol.dialects import PREVIEW_AUDIO_FORMATS, SERVER_EVENT_RENAMES

_SIMPLE_VALUE = re.compile(r"[\w.\-]*|\$\{\w+\}|\{[A-Za-z_]\w*\}")

Deriver = Callable[[re.Match[str], str], dict[str, str | None]]


def _event_renamed(m: re.Match[str], text: str) -> dict[str, str | None]:
    ga = SERVER_EVENT_RENAMES[m["name"]]
    q = m["q"]
    # A handler for the GA name already exists: renaming would create a duplicate case.
    if f"{q}{ga}{q}" in text:
        return {
            "ga": ga,
            "fix": None,
            "change": f"a handler for '{ga}' already exists: delete the Preview one",
        }
    return {"ga": ga}


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


DERIVERS: Final[dict[str, Deriver]] = {
    "audio_format": _audio_format,
    "event_renamed": _event_renamed,
    "preview_path": _preview_path,
    "ga_query": _ga_query,
    "remove_element": _remove_element,
    "remove_header": _remove_header,
    "python_beta": _python_beta,
    "node_beta_import": _node_beta_import,
}
