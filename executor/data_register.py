"""Provider data register: what leaves the VPS, to whom, kept how long, used for what.

For each configured provider the register shows its destination (base URL, region), the
fields its prompts send (read from the prompt templates it uses: the persona input's
fields when a template embeds ``input_json``, and every other placeholder by name), the
retention and training-use flags the desk declared, and the last review. The daemon warns
at start when a review is older than the configured period, a provider has no register
entry, or a template sends a field the register does not declare (an account number, say).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from executor.settings import Settings

# Placeholders that carry no market or account data: fixed text from our own code.
STATIC_PLACEHOLDERS = frozenset({"schema_json", "tags", "glossary"})
LOCAL_KINDS = frozenset({"structure", "momentum", "smc_rules"})
_PLACEHOLDER = re.compile(r"\$\{(\w+)\}|\$(\w+)")


@dataclass
class RegisterRow:
    provider: str
    kind: str
    destination: str
    region: str | None
    sent_fields: list[str]
    declared_fields: list[str]
    retention_days: int | None
    training_use: bool | None
    last_review: str | None
    warnings: list[str] = field(default_factory=list)


def _stage_fields(stage: str) -> list[str]:
    from ensemble.schemas import ExecutionInput, ResearchInput, RiskInput

    model = {"research": ResearchInput, "risk": RiskInput, "execution": ExecutionInput}.get(stage)
    return sorted(model.model_fields) if model is not None else []  # type: ignore[attr-defined]


def _template_fields(settings: Settings, provider: Any) -> tuple[list[str], list[str]]:
    """(fields sent, problems) for an LLM provider's templates."""
    from domain.errors import EnsembleConfigError
    from ensemble.prompts import PromptLibrary

    problems: list[str] = []
    try:
        library = PromptLibrary.load(settings.ensemble.prompts_dir)
    except (EnsembleConfigError, OSError) as exc:
        return [], [f"prompt library unreadable: {exc}"]
    sent: set[str] = set()
    for stage in provider.effective_stages:
        try:
            template = library.get(provider.templates.get(stage, stage))
        except (EnsembleConfigError, KeyError) as exc:
            problems.append(f"no template for stage {stage}: {exc}")
            continue
        names = {a or b for a, b in _PLACEHOLDER.findall(template.system + template.user)}
        for name in names - STATIC_PLACEHOLDERS:
            if name == "input_json":
                sent.update(_stage_fields(stage))
            else:
                sent.add(name)
    return sorted(sent), problems


def register(settings: Settings, today: date | None = None) -> list[RegisterRow]:
    today = today or date.today()
    gov = settings.governance
    rows = []
    for p in settings.ensemble.providers:
        entry = gov.providers.get(p.name)
        if p.kind in LOCAL_KINDS:
            rows.append(RegisterRow(p.name, p.kind, "local: nothing leaves the VPS", None, [],
                                    [], None, None, None))
            continue
        default_url = {"openai": "https://api.openai.com/v1",
                       "anthropic": "https://api.anthropic.com"}.get(p.kind, "?")
        sent, problems = _template_fields(settings, p)
        declared = sorted(entry.data_fields) if entry else []
        warnings = list(problems)
        if entry is None:
            warnings.append(f"no [governance.providers.{p.name}] register entry")
        else:
            if entry.last_review is None:
                warnings.append("never reviewed")
            elif (today - entry.last_review).days > gov.review_period_days:
                warnings.append(f"last review {entry.last_review.isoformat()} is older than "
                                f"{gov.review_period_days} days")
            undeclared = [f for f in sent if f not in declared]
            if undeclared:
                warnings.append("templates send undeclared field(s): " + ", ".join(undeclared))
        rows.append(RegisterRow(
            p.name, p.kind, p.base_url or default_url, entry.region if entry else None, sent,
            declared, entry.retention_days if entry else None,
            entry.training_use if entry else None,
            entry.last_review.isoformat() if entry and entry.last_review else None, warnings))
    return rows


def warnings(settings: Settings, today: date | None = None) -> list[str]:
    return [f"provider {r.provider}: {w}" for r in register(settings, today) for w in r.warnings]
