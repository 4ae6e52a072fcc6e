"""The tree-sitter TypeScript parsers that ``--fix`` (:mod:`.fixer`) and the declared-type
check (:mod:`.tstypes`) share.

tree-sitter is imported inside :func:`ts_parser`, not at the top: it loads only when a
JavaScript or TypeScript file is fixed or a TypeScript payload's declared type is read, so
``rtgate migrate check`` on other languages never pays for it.
"""

from __future__ import annotations

from functools import cache
from typing import Any


@cache
def ts_parser(kind: str) -> Any:
    """A tree-sitter parser for ``"ts"`` or ``"tsx"`` (JavaScript parses as TSX)."""
    import tree_sitter  # deferred: only --fix on JS/TS needs it
    import tree_sitter_typescript

    language = (
        tree_sitter_typescript.language_typescript()
        if kind == "ts"
        else tree_sitter_typescript.language_tsx()
    )
    return tree_sitter.Parser(tree_sitter.Language(language))
