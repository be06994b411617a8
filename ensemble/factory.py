"""Build an ``Ensemble`` from an ``EnsembleConfig``: the one place providers are made.

Checks everything that can be checked before the first bar: every provider's parameters,
every LLM's key (except in replay, where nothing goes out), every template a provider will
render (and that none changed without a version bump). The LLM SDKs are imported here,
at start-up, so the first decision does not pay for the import inside its deadline.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import SecretStr

from domain.errors import EnsembleConfigError
from ensemble.base import ModelClient
from ensemble.breaker import CircuitBreaker
from ensemble.config import EnsembleConfig, ProviderConfig
from ensemble.ensemble import Ensemble
from ensemble.local import MomentumProvider, SmcRulesProvider, StructureProvider
from ensemble.members import LocalPersona, LocalVoter, Member, ModelMember
from ensemble.personas import ExecutionRulesProvider, RiskRulesProvider
from ensemble.prompts import PromptLibrary, PromptTemplate
from ensemble.recording import RecordingStore
from ensemble.telemetry import TelemetrySink

ClientFactory = Callable[[ProviderConfig, SecretStr | None], ModelClient]

_VOTERS: dict[str, Any] = {"structure": StructureProvider, "momentum": MomentumProvider,
                           "smc_rules": SmcRulesProvider}
_PERSONAS: dict[str, Any] = {"risk_rules": RiskRulesProvider,
                             "execution_rules": ExecutionRulesProvider}


def default_client_factory(cfg: ProviderConfig, api_key: SecretStr | None) -> ModelClient:
    if cfg.kind == "openai":
        from ensemble.openai_chat import OpenAIChatClient

        return OpenAIChatClient(
            model=cfg.model, api_key=api_key, base_url=cfg.base_url, timeout_s=cfg.timeout_s,
            max_retries=cfg.max_retries, max_tokens=cfg.max_tokens,
            max_tokens_param=cfg.max_tokens_param, temperature=cfg.temperature,
            structured_output=cfg.structured_output)
    from ensemble.anthropic_messages import AnthropicMessagesClient

    return AnthropicMessagesClient(
        model=cfg.model, api_key=api_key, base_url=cfg.base_url, timeout_s=cfg.timeout_s,
        max_retries=cfg.max_retries, max_tokens=cfg.max_tokens, temperature=cfg.temperature,
        structured_output=cfg.structured_output)


def _api_key(cfg: ProviderConfig, secrets: Mapping[str, SecretStr | None]) -> SecretStr | None:
    if cfg.api_key is not None and cfg.api_key.get_secret_value():
        return cfg.api_key
    name = cfg.effective_key_name
    value = secrets.get(name) if name else None
    if value is not None and value.get_secret_value():
        return value
    if cfg.kind == "openai" and cfg.base_url:
        return None  # a local OpenAI-compatible server (vLLM, llama.cpp, Ollama)
    raise EnsembleConfigError(
        f"ensemble provider {cfg.name!r} ({cfg.kind}) needs the secret {name!r}: set it in "
        f"the environment (DTA_{(name or '').upper()}), .env or systemd credentials")


def build_ensemble(config: EnsembleConfig, *, secrets: Mapping[str, SecretStr | None],
                   params_hash: str, telemetry: TelemetrySink | None = None,
                   clock: Callable[[], float] = time.monotonic,
                   client_factory: ClientFactory | None = None) -> Ensemble:
    """The ensemble ``config`` describes. Raises ``EnsembleConfigError`` (incl.
    ``PromptLibraryError``) naming the provider or template at fault."""
    make_client = client_factory or default_client_factory
    library: PromptLibrary | None = None
    if config.has_llm:
        library = PromptLibrary.load(config.prompts_dir)
    store = (RecordingStore(config.recordings_path)
             if config.mode in ("record", "replay") else None)
    breaker_config = config.effective_breaker  # slow_call_ms resolved from the deadline
    members: list[Member] = []
    for cfg in config.providers:
        breaker = CircuitBreaker(cfg.name, breaker_config, clock)
        common: dict[str, Any] = {
            "name": cfg.name, "kind": cfg.kind, "provider_class": cfg.effective_class,
            "stages": frozenset(cfg.effective_stages), "breaker": breaker}
        try:
            if cfg.kind in _VOTERS:
                members.append(LocalVoter(**common, provider=_VOTERS[cfg.kind](
                    cfg.name, **cfg.params)))
                continue
            if cfg.kind in _PERSONAS:
                members.append(LocalPersona(**common, provider=_PERSONAS[cfg.kind](
                    cfg.name, **cfg.params)))
                continue
        except (TypeError, ValueError) as exc:
            raise EnsembleConfigError(f"ensemble.providers[{cfg.name}].params: {exc}") from None
        assert library is not None
        templates: dict[str, PromptTemplate] = {}
        for stage in cfg.effective_stages:
            templates[stage] = library.get(cfg.templates.get(stage, stage))
            if templates[stage].stage != stage:
                raise EnsembleConfigError(
                    f"ensemble provider {cfg.name!r}: template {templates[stage].ref} is for "
                    f"stage {templates[stage].stage!r}, not {stage!r}")
        client = None
        if config.mode != "replay":
            client = make_client(cfg, _api_key(cfg, secrets))
        members.append(ModelMember(
            **common, inline=False, model=cfg.model, client=client, templates=templates,
            mode=config.mode, store=store, validation=config.validation,
            timeout_s=cfg.timeout_s, late_grace_s=config.late_grace_ms / 1000.0,
            price_in_per_1k=cfg.price_in_per_1k, price_out_per_1k=cfg.price_out_per_1k))
    return Ensemble(members=members, weights=config.weights, params_hash=params_hash,
                    config=config, telemetry=telemetry, clock=clock)
