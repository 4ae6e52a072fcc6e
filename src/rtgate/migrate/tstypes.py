"""TypeScript: the declared type an object literal is checked against, so ``--fix`` never
rewrites a payload into a shape its annotation forbids.

Contracts:

* :func:`declared_type` finds the type written for the outermost literal that encloses
  the object at a character offset (the ``session`` of ``{type: 'session.update',
  session: {…}}`` climbs to the event literal): a variable or class-field annotation
  (``const u: T = {…}``), ``{…} as T`` / ``satisfies T`` / ``<T>{…}``, the return type of
  the function that returns it, a default parameter's type, or the parameter type of a
  function or method declared in the same file that receives it as an argument. It
  returns ``None`` when no type is written there (a call to an SDK method, plain
  JavaScript), which is the common case.
* :func:`type_conflict` says why a rewrite to the GA shape would break ``tsc`` (a reason
  sentence), or ``""`` when the type is loose (``any``, ``unknown``, ``object``,
  ``Record<string, any|unknown>``, ``as const``) or is openai-node's GA type (imported from
  ``openai/resources/realtime/…`` or written ``OpenAI.Realtime.…``). Any other declared
  type describes the app's own or openai-node's Preview shape, which the checker cannot
  edit safely; the caller then leaves the payload alone and reports the reason.
* Parsing uses tree-sitter's TypeScript / TSX grammar; text the grammar cannot read is
  treated as untyped (never an error).
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from .model import Lang
from .tsparser import ts_parser  # tree-sitter itself loads only when a parser is asked for

# Between the literal and the node that can carry its type.
_CLIMB = frozenset({"pair", "object", "array", "parenthesized_expression"})
_FUNCTIONS = frozenset(
    {"function_declaration", "function_expression", "arrow_function", "method_definition", "function"}
)
_DECLARATIONS = frozenset(
    {"function_declaration", "method_definition", "method_signature", "function_signature"}
)
_LOOSE = re.compile(
    r"""(?:any|unknown|object|Object|const
    |Record<\s*string\s*,\s*(?:any|unknown)\s*>
    |\{\s*\[\s*\w+\s*:\s*string\s*\]\s*:\s*(?:any|unknown)\s*;?\s*\})\Z""",
    re.X,
)
_GA_MODULE = re.compile(r"openai/resources/realtime(?:/|\Z)")
_PREVIEW_MODULE = re.compile(r"openai/(?:resources/)?beta/realtime(?:/|\Z)")
_GA_QUALIFIED = re.compile(r"OpenAI\.Realtime\.")
_PREVIEW_QUALIFIED = re.compile(r"OpenAI\.Beta\.Realtime\.")
GA_TYPES_HINT = (
    "openai-node's RealtimeSessionCreateRequest / SessionUpdateEvent"
    " from 'openai/resources/realtime/realtime'"
)


@lru_cache(maxsize=4)  # a file with several payloads is parsed once
def _tree(text: str, lang: Lang) -> Any:
    data = text.encode("utf-8", errors="surrogateescape")
    return ts_parser("tsx" if lang is Lang.TSX else "ts").parse(data)


def _text(node: Any) -> str:
    return bytes(node.text).decode("utf-8", errors="replace")


def _annotation(node: Any) -> str | None:
    """The type written in a ``type_annotation`` node (without the colon)."""
    if node is None:
        return None
    named = node.named_children
    return _text(named[0]) if named else None


def _callee_name(call: Any) -> str | None:
    fn = call.child_by_field_name("function")
    if fn is None:
        return None
    if fn.type == "member_expression":
        fn = fn.child_by_field_name("property")
    return _text(fn) if fn is not None and fn.type in ("identifier", "property_identifier") else None


def _parameter_type(root: Any, name: str, index: int) -> str | None:
    """The type of parameter ``index`` of a function / method named ``name`` in the file."""
    stack = [root]
    while stack:
        node = stack.pop()
        stack.extend(node.named_children)
        if node.type not in _DECLARATIONS:
            continue
        ident = node.child_by_field_name("name")
        params = node.child_by_field_name("parameters")
        if ident is None or params is None or _text(ident) != name:
            continue
        args = [p for p in params.named_children if p.type in ("required_parameter", "optional_parameter")]
        if index < len(args):
            declared = _annotation(args[index].child_by_field_name("type"))
            if declared is not None:
                return declared
    return None


def declared_type(text: str, offset: int, lang: Lang) -> tuple[str, str, int] | None:
    """``(type, where, line)`` for the literal whose ``{`` is at ``offset``, or ``None``."""
    tree = _tree(text, lang)
    start = len(text[:offset].encode("utf-8", errors="surrogateescape"))
    node = tree.root_node.descendant_for_byte_range(start, start + 1)
    if node is None or node.parent is None or node.parent.type != "object":
        return None
    node = node.parent
    while node.parent is not None and node.parent.type in _CLIMB:
        node = node.parent
    parent = node.parent
    if parent is None:
        return None
    line = parent.start_point[0] + 1
    kind = parent.type
    if kind in ("variable_declarator", "public_field_definition", "required_parameter", "optional_parameter"):
        found = _annotation(parent.child_by_field_name("type"))
        return (found, "its annotation", line) if found else None
    if kind in ("as_expression", "satisfies_expression"):
        named = parent.named_children
        word = "as" if kind == "as_expression" else "satisfies"
        return (_text(named[-1]), f"'{word}'", line) if len(named) > 1 else None
    if kind == "type_assertion":
        args = parent.named_children[0] if parent.named_children else None
        inner = args.named_children if args is not None else []
        return (_text(inner[0]), "a type assertion", line) if inner else None
    if kind == "return_statement":
        fn = parent.parent
        while fn is not None and fn.type not in _FUNCTIONS:
            fn = fn.parent
        found = _annotation(fn.child_by_field_name("return_type")) if fn is not None else None
        return (found, "the function's return type", line) if found else None
    if kind == "arguments" and parent.parent is not None:
        name = _callee_name(parent.parent)
        index = [c.id for c in parent.named_children].index(node.id)
        found = None
        # Walk the tree only when the text shows a declaration of the callee with a typed
        # parameter (``name(a: T`` / ``name<T>(a?: T``; an object argument ``name({a: 1``
        # has a brace first).
        typed_params = rf"(?<![\w$]){re.escape(name or '')}\s*(?:<[^()]*>)?\s*\([^(){{}}]*?[\w$]\??\s*:"
        if name and re.search(typed_params, text):
            found = _parameter_type(tree.root_node, name, index)
        return (found, f"the parameter of {name}() declared in this file", line) if found else None
    return None


def _imported_from(text: str, name: str) -> str | None:
    """The module a type name is imported from in ``text`` (named or default import)."""
    pattern = re.compile(
        r"import\s+(?:type\s+)?(?P<what>[^;]*?)\s+from\s+(?P<q>[\"'])(?P<src>[^\"']+)(?P=q)", re.S
    )
    for m in pattern.finditer(text):
        if re.search(rf"(?<![\w$]){re.escape(name)}(?![\w$])", m["what"]):
            return m["src"]
    return None


def type_conflict(text: str, offset: int, lang: Lang) -> str:
    """Why rewriting the literal at ``offset`` would break ``tsc``, or ``""``."""
    if lang not in (Lang.TS, Lang.TSX):
        return ""
    found = declared_type(text, offset, lang)
    if found is None:
        return ""
    declared, where, line = found
    declared = " ".join(declared.split())
    if _LOOSE.match(declared) or _GA_QUALIFIED.match(declared):
        return ""
    head = re.match(r"[\w$]+", declared)
    source = _imported_from(text, head.group()) if head else None
    if source is not None and _GA_MODULE.match(source):
        return ""
    shown = declared if len(declared) <= 60 else declared[:57] + "..."
    if (source is not None and _PREVIEW_MODULE.match(source)) or _PREVIEW_QUALIFIED.match(declared):
        return (
            f"it is typed '{shown}' ({where}, line {line}), openai-node's Preview type: use "
            f"{GA_TYPES_HINT} and rerun --fix (tsc would reject the GA shape under the Preview type)"
        )
    return (
        f"it is typed '{shown}' ({where}, line {line}): tsc would reject the GA shape under "
        f"that type; change the type to the GA session shape ({GA_TYPES_HINT}) and rerun --fix"
    )
