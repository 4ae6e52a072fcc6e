"""The rule table of ``rtgate migrate check``: the Preview → GA checklist as data.

Every rule is a :class:`~rtgate.migrate.model.Rule`. Pattern rules are listed here; rules
whose evidence needs more than one regex (payload shapes, dependency versions) are
declared here too, with ``analyzer`` naming the module that evaluates them
(:mod:`rtgate.migrate.payloads`, :mod:`rtgate.migrate.manifests`), so that ``--help``,
the docs and SARIF see one table.

Renamed event names, session fields and content types are not repeated here: they come
from :mod:`rtgate.protocol.dialects` (docs/protocol.md, Preview dialect), the same tables
the Preview bridge uses.

Derivers (``Rule.derive_name``, in :mod:`rtgate.migrate.derive`) turn a regex match into
extra template fields; a deriver may set ``fix`` to ``None`` to withhold the fix for that
occurrence (for example when a URL's ``api-version`` is filled in by positional
formatting, so removing it would shift the arguments).
"""

from __future__ import annotations

import re
from typing import Final

from rtgate.protocol.dialects import (
    PREVIEW_BETA_HEADER,
    PREVIEW_BETA_SUBPROTOCOL,
    SERVER_EVENT_RENAMES,
)

from .model import (
    ALL_TEXT_LANGS,
    CODE_LANGS,
    JS_LANGS,
    Checklist,
    FixKind,
    Lang,
    Rule,
    Severity,
)

# Minimum SDK versions. The checklist's minimums are Python openai 1.54.0, JavaScript
# openai 4.77.0 and .NET OpenAI 2.9.0; where the first release that ships the GA realtime
# client is later, that release is the minimum:
# * openai-python 1.107.0 is the first GA release (docs/protocol.md, SDK versions).
# * openai-node 5.20.0 (2025-09-08): CHANGELOG "api: ship the RealtimeGA API shape"
#   (openai/openai-node PR #1639); 5.19.x still typed the Preview shapes.
# * OpenAI .NET 2.9.0: the checklist's minimum; Azure.AI.OpenAI 2.9.0-beta.1 release notes
#   state its Preview-based RealtimeClient was removed in favour of OpenAI 2.9.
MIN_VERSIONS: Final[dict[str, tuple[str, str]]] = {
    # ecosystem: (minimum, why)
    "python": ("1.107.0", "the first openai-python release with the GA client.realtime"),
    "node": ("5.20.0", "the first openai-node release with the GA Realtime shapes"),
    "dotnet": ("2.9.0", "the checklist's minimum for the GA realtime client"),
    # Azure.AI.OpenAI: before 2.9.0-beta.1 its realtime client is the Preview one (above).
    "dotnet-azure": ("2.9.0-beta.1", "the first Azure.AI.OpenAI on OpenAI 2.9's GA realtime client"),
}

_Q = r"""["'`]"""
_URL_CHARS = r"""[^\s"'`<>()]"""
_PY_JS = frozenset({Lang.PYTHON, Lang.NOTEBOOK}) | JS_LANGS
_PREVIEW_EVENT_ALT = "|".join(re.escape(name) for name in sorted(SERVER_EVENT_RENAMES, key=len, reverse=True))

_HEADER_NAME, _HEADER_VALUE = PREVIEW_BETA_HEADER

RULES: Final[tuple[Rule, ...]] = (
    # ---------------------------------------------------------------- endpoints
    Rule(
        id="endpoint-preview-path",
        severity=Severity.ERROR,
        checklist=Checklist.ENDPOINTS,
        languages=ALL_TEXT_LANGS,
        title="Azure Preview WebSocket path /openai/realtime",
        message="'/openai/realtime' with api-version is the Azure Preview WebSocket endpoint",
        change="use /openai/v1/realtime?model=<deployment> (no api-version)",
        needle="/openai/realtime",
        pattern=re.compile(rf"/openai/realtime(?![\w/.\-])(?:\?(?P<query>{_URL_CHARS}*))?"),
        fix="{fix}",
        derive_name="preview_path",
        help="Azure answers 401 when api-version is sent on the GA path (docs/protocol.md, Endpoints).",
    ),
    Rule(
        id="endpoint-api-version",
        severity=Severity.ERROR,
        checklist=Checklist.ENDPOINTS,
        languages=ALL_TEXT_LANGS,
        title="api-version on a GA realtime URL",
        message="GA realtime URLs take no api-version (Azure answers 401 when it is present)",
        change="remove the api-version query parameter",
        needle="api-version",
        pattern=re.compile(
            rf"(?P<path>/v1/realtime(?:/calls|/client_secrets)?)"
            rf"\?(?P<query>(?:{_URL_CHARS}*?&)?api-version={_URL_CHARS}*)"
        ),
        fix="{fix}",
        derive_name="ga_query",
    ),
    Rule(
        id="endpoint-deployment-query",
        severity=Severity.ERROR,
        checklist=Checklist.ENDPOINTS,
        languages=ALL_TEXT_LANGS,
        title="deployment= on a GA realtime URL",
        message="GA realtime URLs name the deployment with model=, not deployment=",
        change="rename the deployment query parameter to model",
        needle="deployment=",
        pattern=re.compile(
            rf"(?P<path>/v1/realtime)\?(?P<query>(?:{_URL_CHARS}*?&)?deployment={_URL_CHARS}*)"
        ),
        fix="{fix}",
        derive_name="ga_query",
    ),
    Rule(
        id="endpoint-api-version-param",
        severity=Severity.ERROR,
        checklist=Checklist.ENDPOINTS,
        languages=CODE_LANGS | {Lang.NOTEBOOK},
        title="api-version added to a realtime URL as a query parameter",
        message="api-version is added to the realtime URL's query (GA realtime URLs take none; "
        "Azure answers 401)",
        change="do not set api-version on the /openai/v1/realtime URL",
        needle="api-version",
        pattern=re.compile(
            r"""searchParams\.(?:set|append)\(\s*(?P<q>["'])api-version(?P=q)"""
            r"""|(?P<q2>["'])api-version(?P=q2)\s*:(?!:)"""
        ),
        derive_name="realtime_url_param",
    ),
    # ---------------------------------------------------------------- webrtc / ephemeral keys
    Rule(
        id="webrtc-beta-sdp",
        severity=Severity.ERROR,
        checklist=Checklist.WEBRTC,
        languages=ALL_TEXT_LANGS,
        title="Preview WebRTC SDP exchange POST /v1/realtime?model=",
        message="the Preview WebRTC SDP exchange (POST https://…/v1/realtime?model=…) is gone",
        change=(
            "POST the SDP offer to /v1/realtime/calls (raw application/sdp with an ephemeral "
            "key whose session names the model, or multipart sdp + session); drop ?model="
        ),
        needle="/v1/realtime",
        pattern=re.compile(rf"https?://{_URL_CHARS}*?(?<!/openai)/v1/realtime(?=\?model=|{_Q}|\s|$)", re.M),
    ),
    Rule(
        id="webrtc-azure-sessions",
        severity=Severity.ERROR,
        checklist=Checklist.WEBRTC,
        languages=ALL_TEXT_LANGS,
        title="Azure Preview ephemeral keys /openai/realtimeapi/sessions",
        message="'/openai/realtimeapi/sessions' is the Azure Preview ephemeral-key endpoint",
        change=(
            "POST /openai/v1/realtime/client_secrets with {{session: {{type: 'realtime', "
            "model: <deployment>, …}}}}; the key is the top-level 'value' of the response"
        ),
        needle="/openai/realtimeapi/sessions",
        pattern=re.compile(rf"/openai/realtimeapi/sessions(?:\?{_URL_CHARS}*)?"),
    ),
    Rule(
        id="webrtc-azure-realtimertc",
        severity=Severity.ERROR,
        checklist=Checklist.WEBRTC,
        languages=ALL_TEXT_LANGS,
        title="Azure Preview regional WebRTC endpoint realtimeapi-preview…/v1/realtimertc",
        message="'*.realtimeapi-preview.ai.azure.com/v1/realtimertc' is the Azure Preview WebRTC endpoint",
        change="POST the SDP offer to https://<resource>.openai.azure.com/openai/v1/realtime/calls",
        needle="realtimeapi-preview",
        pattern=re.compile(
            rf"[\w.\-${{}}]*\.realtimeapi-preview\.ai\.azure\.com(?:/v1/realtimertc{_URL_CHARS}*)?"
        ),
    ),
    Rule(
        id="webrtc-openai-sessions",
        severity=Severity.ERROR,
        checklist=Checklist.WEBRTC,
        languages=ALL_TEXT_LANGS,
        title="Preview ephemeral keys /v1/realtime/sessions",
        message="'/v1/realtime/{kind}' is the retired Preview ephemeral-key endpoint",
        change=(
            "POST /v1/realtime/client_secrets with {{session: {{type: 'realtime'|'transcription',"
            " …}}}}; read the key from the top-level 'value' (not client_secret.value)"
        ),
        needle="/v1/realtime/",
        pattern=re.compile(r"/v1/realtime/(?P<kind>sessions|transcription_sessions)(?![\w/])"),
    ),
    Rule(
        id="ephemeral-key-shape",
        severity=Severity.WARNING,
        checklist=Checklist.WEBRTC,
        languages=CODE_LANGS | {Lang.NOTEBOOK},
        title="Preview ephemeral key read from client_secret.value",
        message="Preview key responses nested the key in client_secret.value",
        change="GA client_secrets responses carry the key at the top level: read .value",
        needle="client_secret",
        pattern=re.compile(r"""\.client_secret\??\.value\b|\[["']client_secret["']\]\s*\[["']value["']\]"""),
    ),
    # ---------------------------------------------------------------- beta header / subprotocol
    Rule(
        id="beta-header",
        severity=Severity.ERROR,
        checklist=Checklist.BETA_HEADER,
        languages=ALL_TEXT_LANGS,
        title="OpenAI-Beta: realtime=v1 header",
        message="the 'OpenAI-Beta: realtime=v1' header selects the Preview protocol; GA "
        "services reject it (beta_api_shape_disabled)",
        change="remove the OpenAI-Beta header",
        needle=("OpenAI-Beta", "openai-beta", "OPENAI-BETA", "Openai-Beta"),
        pattern=re.compile(
            rf"(?P<q>{_Q})(?i:{_HEADER_NAME})(?:(?P=q)\s*(?P<sep>[:,=])\s*(?P<q2>{_Q})|:\s*)"
            rf"{re.escape(_HEADER_VALUE)}(?P=q)"
        ),
        fix="",
        fix_kind=FixKind.STRUCTURAL,
        derive_name="remove_header",
    ),
    Rule(
        id="beta-header-config",
        severity=Severity.ERROR,
        checklist=Checklist.BETA_HEADER,
        languages=frozenset({Lang.YAML, Lang.ENV, Lang.JSON}),
        title="OpenAI-Beta: realtime=v1 in configuration",
        message="configuration sets the 'OpenAI-Beta: realtime=v1' header (Preview protocol)",
        change="remove the OpenAI-Beta header from the configuration",
        needle=("OpenAI-Beta", "openai-beta", "OPENAI_BETA", "OPENAI-BETA"),
        pattern=re.compile(r"(?im)^[ \t]*(?:openai[-_]beta)[ \t]*[:=][ \t]*[\"']?realtime=v1\b"),
    ),
    Rule(
        id="beta-subprotocol",
        severity=Severity.ERROR,
        checklist=Checklist.BETA_HEADER,
        languages=ALL_TEXT_LANGS,
        title="openai-beta.realtime-v1 WebSocket subprotocol",
        message=f"the '{PREVIEW_BETA_SUBPROTOCOL}' subprotocol selects the Preview protocol",
        change="remove it; keep 'realtime' and 'openai-insecure-api-key.<key>'",
        needle=PREVIEW_BETA_SUBPROTOCOL,
        pattern=re.compile(rf"(?P<q>{_Q}){re.escape(PREVIEW_BETA_SUBPROTOCOL)}(?P=q)"),
        fix="",
        fix_kind=FixKind.STRUCTURAL,
        derive_name="remove_element",
    ),
    # ---------------------------------------------------------------- events
    Rule(
        id="event-renamed",
        severity=Severity.ERROR,
        checklist=Checklist.EVENTS,
        languages=CODE_LANGS | {Lang.NOTEBOOK, Lang.JSON, Lang.YAML},
        title="Preview server event name",
        message="'{name}' is the Preview name of '{ga}'; handlers for it never fire on GA",
        change="rename '{name}' to '{ga}'",
        needle=("response.", "conversation.item.created", "transcription_session."),
        pattern=re.compile(
            rf"(?P<q>\\?{_Q})(?P<pre>(?:server|client)\.)?(?P<name>{_PREVIEW_EVENT_ALT})(?P=q)"
        ),
        fix="{q}{pre}{ga}{q}",
        derive_name="event_renamed",
        help="Names from rtgate.protocol.dialects.SERVER_EVENT_RENAMES (docs/protocol.md, Preview dialect).",
    ),
    Rule(
        id="event-prefix",
        severity=Severity.WARNING,
        checklist=Checklist.EVENTS,
        languages=CODE_LANGS | {Lang.NOTEBOOK},
        title="Prefix test on a Preview event family",
        message="'{name}' matches Preview event names only",
        change="use the GA prefix: response.output_text / response.output_audio / "
        "response.output_audio_transcript",
        needle="response.",
        pattern=re.compile(rf"(?P<q>{_Q})(?P<name>response\.(?:text|audio|audio_transcript)\.?)(?P=q)"),
    ),
    Rule(
        id="event-removed",
        severity=Severity.WARNING,
        checklist=Checklist.EVENTS,
        languages=CODE_LANGS | {Lang.NOTEBOOK},
        title="conversation.created is not sent by GA servers",
        message="GA servers do not send 'conversation.created'; code that waits for it hangs",
        change="start after 'session.created' instead",
        needle="conversation.created",
        pattern=re.compile(rf"(?P<q>{_Q})(?:server\.)?conversation\.created(?P=q)"),
    ),
    Rule(
        id="event-transcription-session-update",
        severity=Severity.ERROR,
        checklist=Checklist.EVENTS,
        languages=CODE_LANGS | {Lang.NOTEBOOK, Lang.JSON},
        title="transcription_session.update client event",
        message="GA rejects 'transcription_session.update' (invalid_value on type)",
        change="send session.update with session.type 'transcription' and "
        "audio.input.{format, transcription, turn_detection, noise_reduction}",
        needle="transcription_session.update",
        pattern=re.compile(rf"(?P<q>{_Q})transcription_session\.update(?P=q)"),
    ),
    # ---------------------------------------------------------------- session payloads
    Rule(
        id="session-missing-type",
        severity=Severity.ERROR,
        checklist=Checklist.SESSION,
        languages=CODE_LANGS | {Lang.NOTEBOOK, Lang.JSON},
        title="session.update without session.type",
        message="this session.update has no session.type: GA rejects it "
        "(missing_required_parameter 'session.type')",
        change="add type: 'realtime' (or 'transcription') to the session object",
        fix_kind=FixKind.STRUCTURAL,
        analyzer="payloads",
    ),
    Rule(
        id="session-preview-field",
        severity=Severity.ERROR,
        checklist=Checklist.SESSION,
        languages=CODE_LANGS | {Lang.NOTEBOOK, Lang.JSON, Lang.YAML},
        title="Preview-only session field",
        message="'{field}' is a Preview session field: GA answers unknown_parameter",
        change="{change}",
        analyzer="payloads",
        help=("Fields from rtgate.protocol.dialects.PREVIEW_SESSION_FIELDS "
              "(docs/protocol.md, Preview dialect)."),
    ),
    Rule(
        id="response-preview-field",
        severity=Severity.ERROR,
        checklist=Checklist.SESSION,
        languages=CODE_LANGS | {Lang.NOTEBOOK, Lang.JSON},
        title="Preview-only response.create field",
        message="'{field}' is a Preview response field",
        change="{change}",
        analyzer="payloads",
    ),
    Rule(
        id="audio-format-string",
        severity=Severity.ERROR,
        checklist=Checklist.SESSION,
        languages=CODE_LANGS | {Lang.NOTEBOOK, Lang.JSON, Lang.YAML},
        title="Audio format given as a Preview string",
        message="'{fmt}' is a Preview audio format string; GA formats are objects",
        change="use {ga}",
        needle=("pcm16", "g711_"),
        pattern=re.compile(
            r"""(?<![\w.])format(?P<kq>\\?["']?)\s*[:=]\s*(?P<v>(?P<q>\\?["'])(?P<fmt>pcm16|g711_ulaw|g711_alaw)(?P=q))"""
        ),
        fix="{ga}",
        fix_kind=FixKind.STRUCTURAL,
        analyzer="",
        derive_name="audio_format",
    ),
    Rule(
        id="content-type-preview",
        severity=Severity.ERROR,
        checklist=Checklist.CONTENT,
        languages=CODE_LANGS | {Lang.NOTEBOOK, Lang.JSON},
        title="Assistant content type text/audio",
        message="assistant item content type '{old}' is Preview; GA uses '{new}'",
        change="rename the content type '{old}' to '{new}'",
        analyzer="payloads",
        help=("response.content_part.* parts keep text/audio: not flagged "
              "(docs/protocol.md, Preview dialect)."),
    ),
    Rule(
        id="content-type-compare",
        severity=Severity.ERROR,
        checklist=Checklist.CONTENT,
        languages=CODE_LANGS | {Lang.NOTEBOOK},
        title="Received item content compared with text/audio",
        message="received assistant content has type '{new}' on GA, never '{old}': this test is always false",
        change="compare with '{new}'",
        needle=("content",),
        pattern=re.compile(
            r"""\bcontent\b[^\n;]{0,80}?(?:\.type\b|\[\s*["']type["']\s*\])\s*(?:===?|!==?|\bis\b)\s*"""
            r"""(?P<v>(?P<q>["'])(?P<old>text|audio)(?P=q))"""
        ),
        fix="{q}{new}{q}",
        derive_name="content_compare",
        help=("Only in files that speak the Realtime API; content_part.* parts keep text/audio "
              "(docs/protocol.md, Preview dialect)."),
    ),
    # ---------------------------------------------------------------- SDK usage
    Rule(
        id="sdk-python-beta-realtime",
        severity=Severity.ERROR,
        checklist=Checklist.SDK,
        languages=_PY_JS,
        title="openai SDK beta realtime namespace",
        message="'beta.realtime.{what}' is the Preview client (sends OpenAI-Beta: realtime=v1)",
        change="use client.realtime.connect() / client.realtime.client_secrets.create()",
        needle="beta.realtime",
        pattern=re.compile(r"\.beta\.realtime\.(?P<what>connect|sessions|transcription_sessions)\b"),
        fix="{fix}",
        derive_name="python_beta",
    ),
    Rule(
        id="sdk-node-beta-import",
        severity=Severity.ERROR,
        checklist=Checklist.SDK,
        languages=JS_LANGS,
        title="openai-node beta realtime module",
        message="'openai/{res}beta/realtime/{mod}' is the Preview realtime client",
        change="import from 'openai/realtime/websocket' or 'openai/realtime/ws' (openai-node ≥ 5.20.0)",
        needle="beta/realtime",
        pattern=re.compile(
            r"""(?P<q>["'])openai/(?P<res>resources/)?beta/realtime(?:/(?P<mod>[\w-]+))?(?P=q)"""
        ),
        fix="{fix}",
        derive_name="node_beta_import",
    ),
    Rule(
        id="sdk-rtclient",
        severity=Severity.ERROR,
        checklist=Checklist.SDK,
        languages=CODE_LANGS | {Lang.NOTEBOOK},
        title="Azure Preview realtime SDK (rtclient / rt-client)",
        message="'{name}{name2}' is Azure's Preview realtime SDK: it speaks only the Preview protocol",
        change="use openai (Python ≥ 1.107.0: client.realtime.connect) or openai-node "
        "≥ 5.20.0 (OpenAIRealtimeWebSocket from 'openai/realtime/websocket')",
        needle=("rtclient", "rt-client"),
        pattern=re.compile(
            r"""(?m)^[ \t]*(?:from|import)[ \t]+(?P<name>rtclient)\b"""
            r"""|(?P<q>["'])(?P<name2>rt-client)(?:/[\w/.-]*)?(?P=q)"""
        ),
    ),
    Rule(
        id="sdk-dotnet-preview",
        severity=Severity.ERROR,
        checklist=Checklist.SDK,
        languages=frozenset({Lang.CSHARP}),
        title=".NET Preview realtime API (OpenAI.RealtimeConversation)",
        message="OpenAI.RealtimeConversation is the .NET Preview realtime surface",
        change="update OpenAI to ≥ 2.9.0 and use the OpenAI.Realtime RealtimeClient",
        needle="RealtimeConversation",
        pattern=re.compile(r"using\s+OpenAI\.RealtimeConversation\s*;|\bGetRealtimeConversationClient\s*\("),
    ),
    Rule(
        id="sdk-java-preview",
        severity=Severity.ERROR,
        checklist=Checklist.SDK,
        languages=frozenset({Lang.JAVA, Lang.MAVEN, Lang.GRADLE}),
        title="Azure Preview realtime SDK for Java (azure-ai-openai-realtime)",
        message="azure-ai-openai-realtime is Azure's Preview realtime SDK for Java",
        change="talk to wss://<resource>.openai.azure.com/openai/v1/realtime?model=<deployment> "
        "with the GA protocol (e.g. java.net.http.WebSocket)",
        needle=("azure.ai.openai.realtime", "azure-ai-openai-realtime"),
        pattern=re.compile(r"com\.azure\.ai\.openai\.realtime\b|azure-ai-openai-realtime\b"),
    ),
    Rule(
        id="sdk-go-preview",
        severity=Severity.ERROR,
        checklist=Checklist.SDK,
        languages=frozenset({Lang.GO, Lang.GO_MOD}),
        title="go-openai-realtime v1 (Preview protocol)",
        message="github.com/WqyJh/go-openai-realtime v1 speaks the Preview protocol",
        change="use github.com/WqyJh/go-openai-realtime/v2 (GA) and adapt to the GA events",
        needle="go-openai-realtime",
        pattern=re.compile(r"github\.com/WqyJh/go-openai-realtime(?!/v\d)"),
    ),
    Rule(
        id="sdk-version-python",
        severity=Severity.ERROR,
        checklist=Checklist.SDK,
        languages=frozenset({Lang.REQUIREMENTS, Lang.PYPROJECT, Lang.SETUP_CFG, Lang.PIPFILE, Lang.NOTEBOOK}),
        title="openai (Python) pinned below the GA realtime client",
        message="openai {spec} cannot install {minimum} or later ({why})",
        change="require openai>={minimum}",
        analyzer="manifests",
    ),
    Rule(
        id="sdk-version-node",
        severity=Severity.ERROR,
        checklist=Checklist.SDK,
        languages=frozenset({Lang.PACKAGE_JSON}),
        title="openai (npm) pinned below the GA realtime client",
        message="openai {spec} cannot install {minimum} or later ({why})",
        change='require "openai": "^{minimum}" or later',
        analyzer="manifests",
    ),
    Rule(
        id="sdk-version-dotnet",
        severity=Severity.ERROR,
        checklist=Checklist.SDK,
        languages=frozenset({Lang.NUGET}),
        title="OpenAI or Azure.AI.OpenAI (.NET) below the GA realtime client",
        message="{package} {spec} is below {minimum} ({why})",
        change="reference {package} {minimum} or later",
        analyzer="manifests",
    ),
    Rule(
        id="sdk-version-floor",
        severity=Severity.WARNING,
        checklist=Checklist.SDK,
        languages=frozenset(
            {
                Lang.REQUIREMENTS,
                Lang.PYPROJECT,
                Lang.SETUP_CFG,
                Lang.PIPFILE,
                Lang.PACKAGE_JSON,
                Lang.NOTEBOOK,
            }
        ),
        title="SDK requirement still admits Preview-only versions",
        message="{package} {spec} also admits versions below {minimum} ({why})",
        change="raise the lower bound to {minimum}",
        analyzer="manifests",
    ),
    Rule(
        id="sdk-rtclient-dependency",
        severity=Severity.ERROR,
        checklist=Checklist.SDK,
        languages=frozenset(
            {
                Lang.REQUIREMENTS,
                Lang.PYPROJECT,
                Lang.SETUP_CFG,
                Lang.PIPFILE,
                Lang.PACKAGE_JSON,
                Lang.NOTEBOOK,
            }
        ),
        title="Dependency on Azure's Preview realtime SDK (rtclient / rt-client)",
        message="'{name}' is Azure's Preview realtime SDK",
        change="replace it with openai (Python ≥ 1.107.0) / openai (npm ≥ 5.20.0)",
        analyzer="manifests",
    ),
)

RULES_BY_ID: Final[dict[str, Rule]] = {rule.id: rule for rule in RULES}
PATTERN_RULES: Final[tuple[Rule, ...]] = tuple(r for r in RULES if r.pattern is not None)


def _needles(rule: Rule) -> tuple[str, ...]:
    return (rule.needle,) if isinstance(rule.needle, str) else rule.needle


# Substrings of which at least one must occur for any rule to match: the file prefilter.
TRIGGERS: Final[tuple[str, ...]] = tuple(
    sorted(
        {n for r in PATTERN_RULES for n in _needles(r) if n}
        | {
            "session.update",
            "conversation.item.create",
            "response.create",
            "openai",
            "OpenAI",
            "rtclient",
            "rt-client",
            "input_audio_format",
            "output_audio_format",
            "input_audio_transcription",
            "input_audio_noise_reduction",
            "max_response_output_tokens",
        }
    )
)


def needles_of(rule: Rule) -> tuple[str, ...]:
    """The prefilter substrings of a pattern rule (empty: always run)."""
    return _needles(rule)
