"""Data model of the migration checker: languages, checklist items, rules, findings, edits.

Contracts:

* A :class:`Rule` is data. Pattern rules carry a compiled regular expression and a
  ``needle`` (a plain substring that must occur in the text before the regex runs: the
  cheap prefilter that keeps the scan fast). Analyzer rules (payload shapes, manifests)
  have ``pattern=None`` and are evaluated by the module named in ``analyzer``.
* A :class:`Finding` points at a 1-based line and a 1-based column (Unicode code points)
  and always says what to change. ``edit`` is set only when the change is safe to apply
  mechanically (see :class:`FixKind`).
* An :class:`Edit` replaces ``text[start:end]`` (character offsets into the scanned text)
  with ``replacement``.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field


class Severity(enum.StrEnum):
    """How sure the checker is that the code breaks on GA (maps to SARIF ``level``)."""

    ERROR = "error"  # breaks on the GA service: fails, or handlers never fire
    WARNING = "warning"  # probably breaks, or needs a decision
    NOTE = "note"  # worth a look


class Checklist(enum.StrEnum):
    """The items of the Preview → GA migration checklist, in the order a team does them."""

    SDK = "sdk"
    ENDPOINTS = "endpoints"
    BETA_HEADER = "beta-header"
    EVENTS = "events"
    SESSION = "session"
    CONTENT = "content"
    WEBRTC = "webrtc"


CHECKLIST_TITLES: dict[Checklist, str] = {
    Checklist.SDK: "1. Update the SDK (versions, beta namespaces, Preview-only clients)",
    Checklist.ENDPOINTS: "2. Switch WebSocket URLs to /openai/v1/realtime, drop api-version",
    Checklist.BETA_HEADER: "3. Remove the OpenAI-Beta header and subprotocol",
    Checklist.EVENTS: "4. Rename events (docs/protocol.md, Preview dialect)",
    Checklist.SESSION: (
        "5. Add session.type and move Preview session fields (docs/protocol.md, Preview dialect)"
    ),
    Checklist.CONTENT: "6. Update item content types (docs/protocol.md, Preview dialect)",
    Checklist.WEBRTC: "7. Switch ephemeral keys and WebRTC to client_secrets and /calls",
}


class Lang(enum.StrEnum):
    """Kinds of files the checker understands."""

    PYTHON = "python"
    JS = "javascript"  # also JSX, and .mjs/.cjs
    TS = "typescript"  # .ts/.mts/.cts
    TSX = "tsx"
    HTML = "html"  # inline <script> blocks are JavaScript
    CSHARP = "csharp"
    JAVA = "java"
    GO = "go"
    JSON = "json"
    YAML = "yaml"
    ENV = "env"
    NOTEBOOK = "notebook"
    # dependency manifests
    REQUIREMENTS = "requirements"
    PYPROJECT = "pyproject"
    SETUP_CFG = "setup.cfg"
    PIPFILE = "pipfile"
    PACKAGE_JSON = "package.json"
    NUGET = "nuget"  # *.csproj, Directory.Packages.props, packages.config
    MAVEN = "maven"  # pom.xml
    GRADLE = "gradle"
    GO_MOD = "go.mod"


CODE_LANGS: frozenset[Lang] = frozenset(
    {Lang.PYTHON, Lang.JS, Lang.TS, Lang.TSX, Lang.HTML, Lang.CSHARP, Lang.JAVA, Lang.GO}
)
JS_LANGS: frozenset[Lang] = frozenset({Lang.JS, Lang.TS, Lang.TSX, Lang.HTML})
CONFIG_LANGS: frozenset[Lang] = frozenset({Lang.JSON, Lang.YAML, Lang.ENV, Lang.NOTEBOOK})
MANIFEST_LANGS: frozenset[Lang] = frozenset(
    {
        Lang.REQUIREMENTS,
        Lang.PYPROJECT,
        Lang.SETUP_CFG,
        Lang.PIPFILE,
        Lang.PACKAGE_JSON,
        Lang.NUGET,
        Lang.MAVEN,
        Lang.GRADLE,
        Lang.GO_MOD,
    }
)
ALL_TEXT_LANGS: frozenset[Lang] = CODE_LANGS | CONFIG_LANGS
# Languages whose fixed text is parsed back before it is written (see ``fixer``).
PARSED_LANGS: frozenset[Lang] = frozenset({Lang.PYTHON, Lang.JS, Lang.TS, Lang.TSX, Lang.HTML, Lang.JSON})
# Rules whose fix renames a name other files of the same package may share (an event a
# library dispatches in one file and handles in another): applied in all files or in none.
RENAME_RULES: frozenset[str] = frozenset({"event-renamed"})


class FixKind(enum.StrEnum):
    """How a rule's fix may be applied.

    ``LITERAL``: the edit replaces text inside (or a whole) string literal with text that
    introduces no quote, backslash, brace or newline, so the token structure of any of the
    supported languages is unchanged; allowed everywhere, and still parsed back where a
    parser exists.
    ``STRUCTURAL``: the edit changes syntax (adds a key, removes an entry); applied only in
    :data:`PARSED_LANGS`, and only when the result parses.
    """

    LITERAL = "literal"
    STRUCTURAL = "structural"


@dataclass(frozen=True, slots=True)
class Rule:
    """One check of the migration checklist.

    ``message`` and ``fix`` are ``str.format`` templates over the regex's named groups plus
    whatever ``derive`` adds; a ``fix`` of ``None`` means report only, and ``change`` then
    says in words what to do.
    """

    id: str
    severity: Severity
    checklist: Checklist
    languages: frozenset[Lang]
    title: str
    message: str
    change: str = ""
    needle: str | tuple[str, ...] = ""
    pattern: re.Pattern[str] | None = None
    fix: str | None = None
    fix_kind: FixKind = FixKind.LITERAL
    analyzer: str = ""
    help: str = ""
    derive_name: str = ""  # key into rules.DERIVERS: extra template fields from a match


@dataclass(frozen=True, slots=True)
class Edit:
    """Replace ``text[start:end]`` with ``replacement``."""

    start: int
    end: int
    replacement: str


@dataclass(slots=True)
class Finding:
    """One occurrence of a rule in one file."""

    rule: Rule
    path: str
    line: int
    column: int
    end_line: int
    end_column: int
    message: str
    change: str
    snippet: str = ""
    edit: Edit | None = None
    fixable: bool = False
    context: str = ""  # e.g. "cell 3" in a notebook
    rename_of: str = ""  # RENAME_RULES: the Preview name this finding renames

    def as_dict(self) -> dict[str, object]:
        """The JSON form used by ``--format json`` (stable keys)."""
        return {
            "rule": self.rule.id,
            "severity": self.rule.severity.value,
            "checklist": self.rule.checklist.value,
            "path": self.path,
            "line": self.line,
            "column": self.column,
            "end_line": self.end_line,
            "end_column": self.end_column,
            "message": self.message,
            "change": self.change,
            "fixable": self.fixable,
            "snippet": self.snippet,
            **({"context": self.context} if self.context else {}),
        }


@dataclass(slots=True)
class FileResult:
    """Findings of one file, and what ``--fix`` did to it."""

    path: str
    lang: Lang
    findings: list[Finding] = field(default_factory=list)
    skipped: str = ""  # why the file was not scanned (binary, too large, unreadable)
    fixed_text: str | None = None  # set by --fix when the file changed and parsed back
    fix_refused: str = ""  # why a fix was not written
    diff: str = ""
    sdk_realtime: bool = False  # the file uses the openai SDK's realtime client (any version)
    renamed: frozenset[str] = frozenset()  # RENAME_RULES names the written fix renamed


@dataclass(frozen=True, slots=True)
class Hit:
    """A raw match before it becomes a :class:`Finding` (offsets into the scanned text).

    ``fields`` fill the rule's message/change templates; ``edit`` is the proposed fix.
    """

    rule_id: str
    start: int
    end: int
    fields: dict[str, str] = field(default_factory=dict)
    edit: Edit | None = None
