"""`dta params`: versioned parameter sets. History is append-only; rollback activates an
earlier version as a new event."""

# No `from __future__ import annotations`: see runbooks/cli.py.

import json
import tomllib
from pathlib import Path
from typing import Annotated, Any

import typer

from domain.errors import EXIT_CONFIG, EXIT_NOT_FOUND
from runbooks.common import (
    ConfigOpt,
    JournalOpt,
    JsonOpt,
    OperatorOpt,
    fail,
    identified,
    journal_for,
    operator_name,
    print_out,
    settings_for,
)

app = typer.Typer(help="Versioned parameter sets: list, show, diff, propose, activate, rollback.",
                  no_args_is_help=True)


@app.command("list")
def list_(config: ConfigOpt = None, journal_url: JournalOpt = None, as_json: JsonOpt = False,
          ) -> None:
    """Every version with its parent, author, reason and whether it is active or bad."""
    from guardrails.params import active_version

    journal = journal_for(settings_for(config, journal_url), migrate=False)
    try:
        active = active_version(journal.params)
        versions = journal.params.param_versions()
        events = journal.params.param_events()
    finally:
        journal.close()
    rows = [{"version": v.version, "hash": v.hash, "parent": v.parent, "author": v.author,
             "reason": v.reason, "created_at": v.created_at.isoformat(), "bad": v.bad,
             "active": active is not None and v.version == active.version} for v in versions]
    history = [{"at": e.at.isoformat(), "version": e.version, "action": e.action,
                "operator": e.operator, "reason": e.reason, "trigger": e.trigger}
               for e in events]
    text = "\n".join(
        f"{'*' if r['active'] else ' '} v{r['version']:<3} {r['hash']} parent "
        f"{r['parent'] or '-':<3} {r['author']}: {r['reason']}{'  [BAD]' if r['bad'] else ''}"
        for r in rows) or "no parameter versions yet"
    text += "\nhistory:\n" + "\n".join(_history_line(h) for h in history)
    print_out({"versions": rows, "history": history}, as_json, text)


def _history_line(h: dict[str, Any]) -> str:
    trigger = f" ({h['trigger']})" if h["trigger"] else ""
    return f"  {h['at']} {h['action']} v{h['version']} by {h['operator']}{trigger}: {h['reason']}"


@app.command("show")
def show(version: Annotated[int | None, typer.Argument(help="Version (default: active).")] = None,
         config: ConfigOpt = None, journal_url: JournalOpt = None) -> None:
    """The full content of a version, as JSON."""
    from guardrails.params import ParamError, active_version, get_version

    journal = journal_for(settings_for(config, journal_url), migrate=False)
    try:
        v = (get_version(journal.params, version) if version is not None
             else active_version(journal.params))
    except ParamError as exc:
        fail(str(exc), exc.exit_code)
    finally:
        journal.close()
    if v is None:
        fail("no active parameter version yet", EXIT_NOT_FOUND)
    typer.echo(json.dumps({"version": v.version, "hash": v.hash, "parent": v.parent,
                           "author": v.author, "reason": v.reason, "bad": v.bad,
                           "content": v.content}, indent=2, sort_keys=True))


@app.command("diff")
def diff_(a: int, b: int, config: ConfigOpt = None, journal_url: JournalOpt = None,
          as_json: JsonOpt = False) -> None:
    """Leaf-level differences from version A to version B."""
    from guardrails.params import ParamError, diff, get_version

    journal = journal_for(settings_for(config, journal_url), migrate=False)
    try:
        va, vb = get_version(journal.params, a), get_version(journal.params, b)
    except ParamError as exc:
        fail(str(exc), exc.exit_code)
    finally:
        journal.close()
    changes = diff(va.content, vb.content)
    print_out([{"path": p, "from": x, "to": y} for p, x, y in changes], as_json,
              "\n".join(f"{p}: {x!r} -> {y!r}" for p, x, y in changes) or "identical")


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in patch.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


@app.command("propose")
def propose_(
    reason: Annotated[str, typer.Option(help="Why (journaled).")],
    set_: Annotated[list[str] | None, typer.Option("--set", help="dotted.path=value "
                    "(JSON value), e.g. guardrails.max_position_lots=0.2")] = None,
    file: Annotated[Path | None, typer.Option(help="JSON or TOML patch merged over the "
                    "active version.")] = None,
    activate_now: Annotated[bool, typer.Option("--activate", help="Activate it at once.")] = False,
    operator: Annotated[str | None, typer.Option(help="Who (required with --activate; with "
                        "[governance.people], a person holding the 'operator' role).")] = None,
    config: ConfigOpt = None, journal_url: JournalOpt = None,
) -> None:
    """A new version from the active one plus changes; validated before it is stored."""
    from domain.errors import ConfigError
    from executor.wiring import component_factory
    from guardrails.params import activate, active_version, propose_once

    settings = settings_for(config, journal_url)
    who = identified(settings, operator) if activate_now else operator_name(operator)
    journal = journal_for(settings, migrate=True)
    try:
        active = active_version(journal.params)
        base = active.content if active else settings.parameter_set().values
        patch: dict[str, Any] = {}
        if file is not None:
            text = file.read_text(encoding="utf-8")
            try:
                patch = (tomllib.loads(text) if file.suffix == ".toml" else json.loads(text))
            except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
                fail(f"{file}: {exc}", EXIT_CONFIG)
        for item in set_ or []:
            path, sep, value = item.partition("=")
            if not sep or not path:
                fail(f"--set {item!r}: expected dotted.path=value", EXIT_CONFIG)
            node: dict[str, Any] = {}
            cursor = node
            keys = path.split(".")
            for key in keys[:-1]:
                cursor = cursor.setdefault(key, {})
            cursor[keys[-1]] = _parse_value(value)
            patch = _merge(patch, node)
        if not patch:
            fail("nothing to change: give --set or --file", EXIT_CONFIG)
        content = _merge(base, patch)
        try:
            component_factory(settings, journal)(0, content)
        except ConfigError as exc:
            fail(f"invalid parameter set: {exc}", EXIT_CONFIG)
        got = propose_once(journal.params, content, author=who, reason=reason)
        was_active = active is not None and active.version == got.version.version
        if activate_now and not was_active:
            activate(journal.params, got.version.version, operator=who, reason=reason)
    finally:
        journal.close()
    typer.echo(_proposed_line(got.version.version, got.version.hash, got.created,
                              active=was_active or activate_now))


def _proposed_line(version: int, digest: str, created: bool, *, active: bool) -> str:
    """What `params propose` did: a new version, or the existing one with that content."""
    head = (f"proposed v{version} ({digest})" if created else
            f"no new version: v{version} ({digest}) already holds this content")
    return head + (", active" if active else "; activate with `dta params activate "
                   f"{version} --reason ...`")


@app.command("activate")
def activate_(version: int, reason: Annotated[str, typer.Option(help="Why (journaled).")],
              operator: OperatorOpt = None,
              config: ConfigOpt = None, journal_url: JournalOpt = None) -> None:
    """Make VERSION active; a running daemon picks it up within a second."""
    from executor.param_actions import activate_version

    settings = settings_for(config, journal_url)
    journal = journal_for(settings, migrate=False)
    try:
        activate_version(journal, settings, version, person=operator, reason=reason)
    finally:
        journal.close()
    typer.echo(f"v{version} active")


@app.command("rollback")
def rollback_(reason: Annotated[str, typer.Option(help="Why (journaled).")],
              to: Annotated[int | None, typer.Option(help="Version (default: last "
                            "known-good).")] = None,
              operator: OperatorOpt = None,
              config: ConfigOpt = None, journal_url: JournalOpt = None) -> None:
    """Leave the active version for the last known-good one (or --to), marking the one
    left bad, as a new event; history is never rewritten."""
    from executor.param_actions import rollback_version

    settings = settings_for(config, journal_url)
    journal = journal_for(settings, migrate=False)
    try:
        target = rollback_version(journal, settings, person=operator, reason=reason, to=to)
    finally:
        journal.close()
    typer.echo(f"rolled back to v{target.version} ({target.hash})")


@app.command("evidence")
def evidence_(config: ConfigOpt = None, journal_url: JournalOpt = None,
              as_json: JsonOpt = False) -> None:
    """Each automatic rollback, newest first, with what stood behind it: the trigger and
    its figures, the version left and the one returned to (and their differences), the
    incident it opened, and the record of the version left."""
    from dataclasses import asdict

    from executor.param_actions import rollback_evidence

    journal = journal_for(settings_for(config, journal_url), migrate=False)
    try:
        found = rollback_evidence(journal)
    finally:
        journal.close()
    lines = []
    for e in found:
        lines.append(f"{e.at.isoformat()} v{e.from_version} -> v{e.to_version} "
                     f"({e.trigger}): {e.reason}")
        lines.append(f"  under v{e.from_version}: {e.decisions_under} decisions, "
                     f"{e.orders_under} orders, realised {e.realised_under:+,.2f}")
        lines += [f"  {path}: {old!r} -> {new!r}" for path, old, new in e.changes]
        if e.incident:
            lines.append(f"  incident #{e.incident['id']} {e.incident['severity']} "
                         f"{e.incident['status']}: {e.incident['message']}")
    print_out([asdict(e) for e in found], as_json,
              "\n".join(lines) or "no automatic rollback yet")
