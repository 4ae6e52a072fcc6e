"""SARIF 2.1.0 rendering of a check report (for GitHub code scanning and other viewers).

Contract: :func:`render_sarif` returns a document that validates against the OASIS
SARIF 2.1.0 JSON schema (``sarif-schema-2.1.0.json``, errata 01). Locations are relative
URIs under the ``%SRCROOT%`` base (the working directory of the run); columns are
counted in Unicode code points (``columnKind: unicodeCodePoints``). Every rule of the
table is listed in ``tool.driver.rules``; each result carries its ``ruleIndex``, a
``partialFingerprints`` entry, and, when the finding is fixable, a SARIF ``fix``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from rtgate import __version__ as _rtgate_version

from .check import CheckReport
from .model import CHECKLIST_TITLES, Finding
from .rules import RULES

SCHEMA_URI = "https://json.schemastore.org/sarif-2.1.0.json"


def _uri(path: str) -> str:
    if os.path.isabs(path):
        return Path(path).as_uri()
    posix = Path(path).as_posix()
    return posix[2:] if posix.startswith("./") else posix


def _rule_descriptor(index: int) -> dict[str, object]:
    rule = RULES[index]
    return {
        "id": rule.id,
        "name": "".join(part.capitalize() for part in rule.id.split("-")),
        "shortDescription": {"text": rule.title},
        "fullDescription": {"text": f"{rule.title}. {CHECKLIST_TITLES[rule.checklist]}."},
        "help": {"text": f"{rule.help or rule.title} See docs/migrate.md#{rule.id}."},
        "defaultConfiguration": {"level": rule.severity.value},
        "properties": {"tags": ["migration", "openai-realtime", rule.checklist.value]},
    }


def _result(f: Finding, index: dict[str, int]) -> dict[str, object]:
    uri = _uri(f.path)
    region: dict[str, object] = {
        "startLine": f.line,
        "startColumn": f.column,
        "endLine": max(f.end_line, f.line),
        "endColumn": max(f.end_column, f.column + (0 if f.end_line > f.line else 1)),
    }
    if f.snippet:
        region["snippet"] = {"text": f.snippet}
    location = {
        "physicalLocation": {
            "artifactLocation": {"uri": uri, "uriBaseId": "%SRCROOT%"},
            "region": region,
        }
    }
    fingerprint = hashlib.sha256(f"{f.rule.id}|{uri}|{f.snippet}".encode()).hexdigest()
    result: dict[str, object] = {
        "ruleId": f.rule.id,
        "ruleIndex": index[f.rule.id],
        "level": f.rule.severity.value,
        "message": {"text": f"{f.message}. Change: {f.change}."},
        "locations": [location],
        "partialFingerprints": {"rtgateFinding/v1": fingerprint[:32]},
    }
    if f.fixable and f.edit is not None and not f.context:
        result["fixes"] = [_fix(f, uri)]
    return result


def _fix(f: Finding, uri: str) -> dict[str, object]:
    assert f.edit is not None
    return {
        "description": {"text": f.change},
        "artifactChanges": [
            {
                "artifactLocation": {"uri": uri, "uriBaseId": "%SRCROOT%"},
                "replacements": [
                    {
                        "deletedRegion": {
                            "charOffset": f.edit.start,
                            "charLength": f.edit.end - f.edit.start,
                        },
                        "insertedContent": {"text": f.edit.replacement},
                    }
                ],
            }
        ],
    }


def render_sarif(report: CheckReport) -> str:
    """The SARIF 2.1.0 log of one run (ends with a newline)."""
    index = {rule.id: i for i, rule in enumerate(RULES)}
    findings = sorted(report.findings, key=lambda f: (f.path, f.line, f.column, f.rule.id))
    run = {
        "tool": {
            "driver": {
                "name": "rtgate-migrate",
                "semanticVersion": _rtgate_version,
                "rules": [_rule_descriptor(i) for i in range(len(RULES))],
            }
        },
        "originalUriBaseIds": {"%SRCROOT%": {"uri": Path.cwd().as_uri() + "/"}},
        "columnKind": "unicodeCodePoints",
        "results": [_result(f, index) for f in findings],
    }
    doc = {"$schema": SCHEMA_URI, "version": "2.1.0", "runs": [run]}
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
