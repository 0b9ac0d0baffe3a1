"""Structure that keeps the code easy to extend: each fact declared once, in the module that owns it.

These read the source (Python's own parser), so they fail on a copied enumeration whatever it does.
"""

import ast
from collections import defaultdict
from pathlib import Path

import scoresde

PACKAGE = Path(scoresde.__file__).resolve().parent


def _trees():
    for path in sorted(PACKAGE.rglob("*.py")):
        yield path.relative_to(PACKAGE), ast.parse(path.read_text(), filename=str(path))


def _string_literal(node) -> tuple[str, ...] | None:
    """The strings of a tuple / list / set literal of at least two strings, else None."""
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)) and len(node.elts) >= 2:
        if all(isinstance(e, ast.Constant) and isinstance(e.value, str) for e in node.elts):
            return tuple(e.value for e in node.elts)
    return None


def test_every_enumeration_has_one_definition():
    """No set of names is spelt out twice: a second copy is a list somebody forgets to update."""
    where = defaultdict(list)
    for path, tree in _trees():
        for node in ast.walk(tree):
            names = _string_literal(node)
            if names is not None:
                where[frozenset(names)].append(f"{path}:{node.lineno}")
    copies = {tuple(sorted(k)): v for k, v in where.items() if len(v) > 1}
    assert not copies, f"the same names are listed in several places: {copies}"


def test_the_config_schema_takes_its_names_from_their_owners():
    """Every `one_of(...)` rule of the schema is given a name defined elsewhere (an enumeration of
    the module that uses the value), never a literal list."""
    tree = ast.parse((PACKAGE / "config" / "schema.py").read_text())
    literal = [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and getattr(node.func, "id", None) == "one_of"
        and node.args
        and _string_literal(node.args[0]) is not None
    ]
    assert not literal, f"config/schema.py lists allowed names itself at lines {literal}"
