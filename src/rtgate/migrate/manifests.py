"""Dependency-manifest rules: SDK versions below the GA minimums, Preview-only SDKs.

Version requirements are reduced to an interval ``[low, high]`` of admitted versions
(exclusive bounds are tracked); a requirement is an *error* when no admitted version
reaches the minimum and a *warning* when it admits the minimum but also older releases.
An unconstrained requirement (``openai``, ``*``, a URL) is not reported. Understood
syntaxes: PEP 440 (``==``, ``===``, ``>=``, ``>``, ``<=``, ``<``, ``~=``, ``!=``, ``==X.*``),
Poetry (``^X``, ``~X``, bare ``X``), npm (``^``, ``~``, comparators, ``x`` ranges, ``||``)
and NuGet (bare ``X`` resolves to X, ``[X]``, ``[X,Y)`` ranges).

Rules evaluated here: ``sdk-version-python``, ``sdk-version-node``, ``sdk-version-dotnet``,
``sdk-version-floor``, ``sdk-rtclient-dependency``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from .model import Hit, Lang
from .rules import MIN_VERSIONS

Version = tuple[int, int, int, int]  # major, minor, patch, 1 = release / 0 = pre-release

_VERSION = re.compile(
    r"v?(\d+)(?:\.(\d+|[x*]))?(?:\.(\d+|[x*]))?(?P<pre>[-.]?(?:a|b|rc|alpha|beta|preview|dev|pre)[\w.]*)?",
    re.I,
)


def parse_version(text: str) -> tuple[Version, int] | None:
    """``(version, precision)``: precision is how many numeric parts were given."""
    m = _VERSION.match(text.strip())
    if not m:
        return None
    parts = [m.group(1), m.group(2), m.group(3)]
    nums = [int(p) for p in parts if p is not None and p.isdigit()]
    precision = len(nums)
    nums += [0] * (3 - len(nums))
    return (nums[0], nums[1], nums[2], 0 if m["pre"] else 1), precision


def _bump(v: Version, precision: int) -> Version:
    """The first version after the range named by the first ``precision`` parts."""
    if precision <= 1:
        return (v[0] + 1, 0, 0, 0)
    if precision == 2:
        return (v[0], v[1] + 1, 0, 0)
    return (v[0], v[1], v[2] + 1, 0)


def _caret_high(v: Version) -> Version:
    if v[0] > 0:
        return (v[0] + 1, 0, 0, 0)
    if v[1] > 0:
        return (0, v[1] + 1, 0, 0)
    return (0, 0, v[2] + 1, 0)


@dataclass(slots=True)
class Interval:
    """Admitted versions ``low ≤ v < high`` (``None``: unbounded). ``high`` is exclusive."""

    low: Version | None = None
    high: Version | None = None

    def narrow(self, low: Version | None = None, high: Version | None = None) -> None:
        if low is not None and (self.low is None or low > self.low):
            self.low = low
        if high is not None and (self.high is None or high < self.high):
            self.high = high


def _exact(iv: Interval, v: Version, precision: int, wildcard: bool) -> None:
    iv.narrow(v, _bump(v, precision) if wildcard else (v[0], v[1], v[2], v[3] + 1))


def _clause(iv: Interval, op: str, raw: str, npm: bool) -> bool:
    parsed = parse_version(raw)
    if parsed is None:
        return False
    v, precision = parsed
    wildcard = raw.rstrip().endswith(("*", "x", "X")) or (npm and precision < 3)
    if op in ("==", "===", "=", ""):
        _exact(iv, v, precision, wildcard)
    elif op == ">=":
        iv.narrow(low=v)
    elif op == ">":
        iv.narrow(low=(v[0], v[1], v[2], v[3] + 1))
    elif op == "<":
        iv.narrow(high=v)
    elif op == "<=":
        iv.narrow(high=(v[0], v[1], v[2], v[3] + 1))
    elif op == "~=":
        iv.narrow(v, _bump(v, max(1, precision - 1)))
    elif op == "^":
        iv.narrow(v, _caret_high(v))
    elif op == "~":
        iv.narrow(v, _bump(v, 2 if precision >= 2 else 1))
    return op != "!="


_CLAUSE = re.compile(r"(===|==|>=|<=|~=|!=|\^|~|>|<|=)?\s*(v?[\dxX*][\w.*\-+]*)")


def requirement_interval(spec: str, *, npm: bool = False) -> Interval | None:
    """The interval admitted by one requirement string; ``None`` when unconstrained."""
    spec = spec.strip().strip("\"'")
    if not spec or spec in ("*", "latest", "x") or re.match(r"^[a-z+]+:|/", spec):
        return None
    branches = [b for b in spec.split("||")] if npm else [spec]
    result: Interval | None = None
    for branch in branches:
        iv = Interval()
        constrained = False
        for m in _CLAUSE.finditer(branch.replace(",", " ")):
            constrained |= _clause(iv, m.group(1) or "", m.group(2), npm)
        if not constrained:
            return None
        if result is None:
            result = iv
        else:  # union of branches, as the hull
            result.low = None if result.low is None or iv.low is None else min(result.low, iv.low)
            result.high = None if result.high is None or iv.high is None else max(result.high, iv.high)
    return result


def nuget_interval(spec: str) -> Interval | None:
    """NuGet: a bare version resolves to itself (lowest applicable); ranges use brackets."""
    spec = spec.strip()
    m = re.fullmatch(r"([\[(])\s*([^,\])]*)\s*(?:,\s*([^\])]*))?\s*([\])])", spec)
    if not m:
        parsed = parse_version(spec)
        if parsed is None or "*" in spec:
            return None
        iv = Interval()
        _exact(iv, parsed[0], parsed[1], wildcard=False)
        return iv
    iv = Interval()
    low, high = m.group(2), m.group(3)
    if m.group(3) is None:  # [X] exact
        return requirement_interval(f"=={low}")
    if low:
        _clause(iv, ">=" if m.group(1) == "[" else ">", low, False)
    if high:
        _clause(iv, "<=" if m.group(4) == "]" else "<", high, False)
    return iv


def _minimum(ecosystem: str) -> tuple[Version, str, str]:
    text, why = MIN_VERSIONS[ecosystem]
    parsed = parse_version(text)
    assert parsed is not None
    return parsed[0], text, why


def _version_hits(
    ecosystem: str, package: str, spec: str, iv: Interval | None, start: int, end: int
) -> Iterator[Hit]:
    if iv is None:
        return
    minimum, text, why = _minimum(ecosystem)
    fields = {"spec": spec.strip(), "minimum": text, "why": why, "package": package}
    rule = {"python": "sdk-version-python", "node": "sdk-version-node"}.get(ecosystem, "sdk-version-dotnet")
    if iv.high is not None and iv.high <= minimum:
        yield Hit(rule, start, end, fields)
    elif iv.low is None or iv.low < minimum:
        if ecosystem.startswith("dotnet"):
            yield Hit(rule, start, end, fields)
        else:
            yield Hit("sdk-version-floor", start, end, fields)


_PY_REQ = re.compile(r"""(?im)^[ \t]*["']?openai(?:\[[^\]]*\])?[ \t]*(?P<spec>(?:[<>=!~^][^"';#\n\]]*))""")
_PY_INLINE = re.compile(r"""["']openai(?:\[[^\]]*\])?\s*(?P<spec>[<>=!~][^"';]*)["']""")
_POETRY = re.compile(
    r"""(?im)^[ \t]*openai[ \t]*=[ \t]*"""
    r"""(?:\{[^}\n]*?version[ \t]*=[ \t]*)?["'](?P<spec>[^"']*)["']"""
)
_RTCLIENT_PY = re.compile(r"""(?im)^[ \t]*["']?(?P<name>rtclient)\b|(?P<name2>aoai-realtime-audio-sdk)""")
_NPM_DEP = re.compile(r'"(?P<name>openai|rt-client)"\s*:\s*"(?P<spec>[^"]*)"')
_NUGET = re.compile(
    r"""<(?:PackageReference|PackageVersion|package)\b[^>]*?\b(?:Include|id)\s*=\s*"(?P<name>OpenAI|Azure\.AI\.OpenAI)"[^>]*?"""
    r"""(?:\b[Vv]ersion\s*=\s*"(?P<spec>[^"]+)"|>\s*<Version>(?P<spec2>[^<]+)</Version>)"""
)


def _python(text: str, lang: Lang) -> Iterator[Hit]:
    seen: set[int] = set()
    patterns = {
        Lang.PYPROJECT: [_PY_INLINE, _POETRY],
        Lang.PIPFILE: [_POETRY],
    }.get(lang, [_PY_REQ])
    for pattern in patterns:
        for m in pattern.finditer(text):
            if m.start() in seen:
                continue
            seen.add(m.start())
            spec = m["spec"].strip().rstrip(",")
            poetry = pattern is _POETRY
            if poetry and re.fullmatch(r"\d[\w.]*", spec):
                spec = f"=={spec}"
            iv = requirement_interval(spec)
            yield from _version_hits("python", "openai", spec, iv, m.start("spec"), m.end("spec"))
    lines: set[int] = set()
    for m in _RTCLIENT_PY.finditer(text):
        line = text.count("\n", 0, m.start())
        if line in lines:  # rtclient = { url = ".../aoai-realtime-audio-sdk/..." }: one dependency
            continue
        lines.add(line)
        name = m["name"] or m["name2"]
        yield Hit("sdk-rtclient-dependency", m.start(), m.end(), {"name": name})


def _package_json(text: str) -> Iterator[Hit]:
    for m in _NPM_DEP.finditer(text):
        if m["name"] == "rt-client":
            yield Hit("sdk-rtclient-dependency", m.start(), m.end(), {"name": "rt-client"})
            continue
        iv = requirement_interval(m["spec"], npm=True)
        yield from _version_hits("node", "openai", m["spec"], iv, m.start("spec"), m.end("spec"))


def _nuget(text: str) -> Iterator[Hit]:
    for m in _NUGET.finditer(text):
        group = "spec" if m["spec"] else "spec2"
        spec = m[group]
        # Azure.AI.OpenAI has its own version line; which of it still ships the Preview
        # realtime client is in MIN_VERSIONS["dotnet-azure"].
        ecosystem = "dotnet" if m["name"] == "OpenAI" else "dotnet-azure"
        iv = nuget_interval(spec)
        yield from _version_hits(ecosystem, m["name"], spec, iv, m.start(group), m.end(group))


def analyze(text: str, lang: Lang) -> Iterator[Hit]:
    """All manifest hits in ``text`` of kind ``lang``."""
    if lang in (Lang.REQUIREMENTS, Lang.PYPROJECT, Lang.SETUP_CFG, Lang.PIPFILE):
        yield from _python(text, lang)
    elif lang is Lang.PACKAGE_JSON:
        yield from _package_json(text)
    elif lang is Lang.NUGET:
        yield from _nuget(text)


_PIP_LINE = re.compile(r"(?m)^[ \t]*[%!]\s*pip3? install\b[^\n]*")
_PIP_OPENAI = re.compile(r"""(?<![\w-])openai(?:\[[^\]]*\])?(?P<spec>[<>=!~][^\s"']*)""")


def pip_install_hits(text: str) -> Iterator[Hit]:
    """``%pip install openai==1.60.0`` lines in notebook cells and scripts."""
    for line in _PIP_LINE.finditer(text):
        for m in _PIP_OPENAI.finditer(text, line.start(), line.end()):
            iv = requirement_interval(m["spec"])
            yield from _version_hits("python", "openai", m["spec"], iv, m.start("spec"), m.end("spec"))
        if re.search(r"\brtclient\b", line.group()):
            yield Hit("sdk-rtclient-dependency", line.start(), line.end(), {"name": "rtclient"})
