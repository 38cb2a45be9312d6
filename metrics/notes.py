"""The suite's notes on undefined metrics, and their grouping for display.

:func:`metrics.suite.run_suite` says why a metric has no value in one note per metric and scope
(``"NAME: nan (REASON)"`` when a ``requires`` check skipped it, ``"NAME (SCOPE): not computed (REASON)"`` when it
failed there; SCOPE ``null``, ``stage grasp``, ``task pick``, ``null, grasp``): the JSON keeps those, one per metric
(:func:`probe.report.gates.undefined_reason` reads them). :func:`group_notes` turns them into one line per distinct
reason, naming the metrics and scopes it applies to, for the table printed by ``probe metrics`` and the report.
"""

from __future__ import annotations

import re

__all__ = ["group_notes", "undefined_note"]

_UNDEFINED = re.compile(r"(?P<name>[A-Za-z0-9_]+)(?: \((?P<scope>[^()]*)\))?: (?P<kind>nan|not computed) "
                        r"\((?P<reason>.*)\)", re.S)
_SCOPED = ("stage", "task")  # scopes "stage X" / "task X", listed as "stages X, Y"


def undefined_note(name: str, kind: str, reason: str, scope: str | None = None) -> str:
    """The note saying why metric ``name`` is undefined (``kind``: "nan" or "not computed") overall or in
    ``scope``: the form :func:`group_notes` groups."""
    return f"{name}{f' ({scope})' if scope else ''}: {kind} ({reason})"


def _scopes(scopes: tuple[str | None, ...]) -> str:
    """`` (overall; stages reach, grasp)``: where a group of notes applies; "" for the overall value alone."""
    if scopes == (None,):
        return ""
    parts: dict[str, list[str]] = {}
    for scope in scopes:
        word, _, value = (scope or "").partition(" ")
        if scope is not None and word in _SCOPED and value:
            parts.setdefault(word, []).append(value)
        else:
            parts.setdefault(scope or "overall", [])
    shown = [key if not values else f"{key}{'s' if len(values) > 1 else ''} {', '.join(values)}"
             for key, values in parts.items()]
    return f" ({'; '.join(shown)})"


def group_notes(notes: list[str]) -> list[str]:
    """``notes`` with the undefined-metric notes of one reason made one line, at the place of the first.

    ``["a: nan (R)", "b: nan (R)", "a (stage x): not computed (S)", "a (stage y): not computed (S)"]`` becomes
    ``["a, b: nan (R)", "a (stages x, y): not computed (S)"]``; metrics of one reason but different scopes are
    listed apart (``"a (stage x); b (overall; stage x): not computed (S)"``). Other notes pass unchanged, duplicates
    once.
    """
    groups: dict[tuple[str, str], dict[str, list[str | None]]] = {}
    order: list[tuple[str, str] | str] = []
    for note in notes:
        found = _UNDEFINED.fullmatch(str(note))
        if found is None:
            if note not in order:
                order.append(note)
            continue
        key = (found["kind"], found["reason"])
        if key not in groups:
            groups[key] = {}
            order.append(key)
        scopes = groups[key].setdefault(found["name"], [])
        if found["scope"] not in scopes:
            scopes.append(found["scope"])
    out = []
    for item in order:
        if isinstance(item, str):
            out.append(item)
            continue
        by_scopes: dict[tuple[str | None, ...], list[str]] = {}
        for name, scopes in groups[item].items():
            by_scopes.setdefault(tuple(scopes), []).append(name)
        where = "; ".join(f"{', '.join(names)}{_scopes(scopes)}" for scopes, names in by_scopes.items())
        out.append(f"{where}: {item[0]} ({item[1]})")
    return out
