"""Structural rules of the code (issue 14): parts are told, never have their fields set by others.

A handler or the composition root that assigns a field on an actor (``actor.x = ...``), on a
shared object (``gateway.draining = True``) or through one (``a.b.c = ...``) bypasses the owner
of that state. Owners expose methods; the front end and the composition root call them.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Every production module.
CHECKED = [
    path
    for folder in ("proxy", "actors", "storage", "web")
    for path in sorted((ROOT / folder).rglob("*.py"))
]

# Objects of a library that are configured by setting fields, or a module's own private record.
ALLOWED: dict[str, set[str]] = {
    "web/api/guard.py": {"g"},  # quart's per-request namespace
    "web/api/usage.py": {"response"},  # a quart Response being built (its timeout)
    "web/hangups.py": {"entry"},  # the module's own private _Watch record
    "web/http_server.py": {"connections_nursery"},  # a trio cancel scope's deadline
    "proxy/listener.py": {"hc"},  # the hypercorn Config being built
    # The standard library's and other libraries' objects, configured by their fields.
    "proxy/log_format.py": {"record"},  # a logging.LogRecord being formatted
    "proxy/stop_signals.py": {"timer"},  # a trio cancel scope's deadline
    "proxy/secret_scrubber.py": {"error"},  # an exception's args, scrubbed before it leaves
    "proxy/upstream_http/transport.py": {"connection"},  # the transport's own pooled connection
    "proxy/upstream_http/response_body.py": {"response"},  # the httpx.Response being read
    "actors/provider_http.py": {"response", "timing"},  # httpx.Response; the call's out-record
    "actors/provider_mock.py": {"timing"},  # the call's out-record of time spent upstream
    "actors/provider.py": {"call"},  # the admission record of the call it runs
    "storage/migrations.py": {"conn"},  # an APSW connection's settings
    "storage/database.py": {"conn"},  # an APSW connection's settings
    # A module's own private records.
    "proxy/monitor/watch.py": {"view"},
    "proxy/providers/openai_compat.py": {"usage"},  # a translated answer's Usage, normalised
    "proxy/rate_limit.py": {"resized"},
    "actors/rate_limiter.py": {"reservation"},
    "actors/fleet_limiter.py": {"reservation", "pending"},  # and an admission waiting its batch
    "actors/budget_tally.py": {"tally"},  # the Tally records its Tallies own
    "actors/fleet_budgets.py": {"pending"},  # an admission waiting its batch
    "actors/session_store.py": {"session"},
}


# Parts that fill in the records of the call they run (its time upstream, its admission
# outcome), or size or re-arm trio objects they own (a CapacityLimiter, a CancelScope's deadline).
OWN_PARTS = {
    "actors/provider.py",
    "actors/provider_admission.py",
    "actors/provider_http_stream.py",
    "web/idle_timer.py",
}


def _assigned_attributes(tree: ast.AST) -> Iterator[tuple[int, str, int]]:
    """(line, root name, chain length) of every ``root.a[.b...] = ...`` in ``tree``."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AugAssign | ast.AnnAssign):
            targets = [node.target]
        else:
            continue
        for target in targets:
            for part in ast.walk(target):
                if not isinstance(part, ast.Attribute) or not isinstance(part.ctx, ast.Store):
                    continue
                depth, base = 0, part
                while isinstance(base, ast.Attribute):
                    depth, base = depth + 1, base.value
                root = base.id if isinstance(base, ast.Name) else type(base).__name__
                yield part.lineno, root, depth


def test_no_module_sets_fields_on_another_part() -> None:
    offences = []
    for path in CHECKED:
        name = path.relative_to(ROOT).as_posix()
        tree = ast.parse(path.read_text(), filename=name)
        for line, root, depth in _assigned_attributes(tree):
            if root in ("self", "cls") and depth == 1:
                continue  # an object's own field
            if root == "self" and depth == 2 and name in OWN_PARTS:
                continue
            if root in ALLOWED.get(name, set()):
                continue
            offences.append(f"{name}:{line}: assigns {root}.{'…' * depth}")
    assert not offences, "\n".join(offences)


def test_the_front_end_gets_no_bag_of_every_part() -> None:
    # The composition root's record of its parts reaches handlers nowhere.
    for path in sorted((ROOT / "web").rglob("*.py")):
        text = path.read_text()
        assert "proxy.wiring" not in text, path
        assert "ServiceParts" not in text, path
    assert not (ROOT / "web" / "gateway.py").exists()
