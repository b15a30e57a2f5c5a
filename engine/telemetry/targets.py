"""What a recorder needs of a provider and a target, worked out once per graph and target.

``Targets`` turns an attempt's target label (``provider/model``) into a ``TargetInfo``: the
bounded metric label, its bound metric children, the try span's name and base attributes, the
health window keys. Built on first use and cached, so a try costs one dict lookup; the cache is
bounded (a pass-through target's label carries the client's model name): past ``limit`` labels
an info is built per try, the slow path, its metric labels folded as ``ModelLabels`` folds them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from engine.telemetry.names import ModelLabels

if TYPE_CHECKING:
    from engine.telemetry.metrics import Metrics, OperationSeries, TargetSeries

__all__ = ["ProviderInfo", "TargetInfo", "Targets"]

_LIMIT: Final = 1024  # target labels cached (a routes.yaml names far fewer)
_OPS_LIMIT: Final = 64  # (request model, response model) pairs cached per target


@dataclass(frozen=True, slots=True)
class ProviderInfo:
    """What labels and spans say of a provider, worked out once per graph."""

    gen_ai_name: str
    server: tuple[str, int] | None
    read_timeout: float

    def span_attrs(self) -> dict[str, Any]:
        attrs: dict[str, Any] = {"gen_ai.provider.name": self.gen_ai_name}
        if self.server is not None:
            attrs["server.address"], attrs["server.port"] = self.server
        return attrs


class TargetInfo:
    """One target label's names, attributes and bound series."""

    __slots__ = (
        "_ops",
        "gen_ai_name",
        "health_p",
        "health_t",
        "key",
        "label",
        "model",
        "provider",
        "provider_attrs",
        "series",
        "span_name",
        "try_attrs",
    )

    def __init__(
        self, key: str, providers: dict[str, ProviderInfo], labels: ModelLabels, metrics: Metrics | None
    ) -> None:
        self.key = key
        provider, _, model = key.partition("/")
        self.provider, self.model = provider, model
        info = providers.get(provider)
        self.gen_ai_name = info.gen_ai_name if info is not None else provider
        self.provider_attrs = info.span_attrs() if info is not None else {"gen_ai.provider.name": provider}
        folded = labels.label(provider, model)
        self.label = key if folded == model else folded  # folded: ``PROVIDER/*``
        self.series: TargetSeries | None = metrics.target(self.label) if metrics is not None else None
        self.span_name = f"chat {model}"
        self.try_attrs: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            **self.provider_attrs,
            "gen_ai.request.model": model,
            "engine.target": key,
        }
        self.health_t, self.health_p = "t:" + key, "p:" + provider
        self._ops: dict[tuple[str, str | None], OperationSeries] = {}

    def operation(
        self, metrics: Metrics, labels: ModelLabels, model: str, response_model: str | None
    ) -> OperationSeries:
        """The GenAI series of an answer by this target (``model``: the request's model when the
        target names none)."""
        key = (model, response_model)
        series = self._ops.get(key)
        if series is None:
            series = metrics.operation_series(self.genai(labels, model, response_model))
            if len(self._ops) < _OPS_LIMIT:
                self._ops[key] = series
        return series

    def genai(self, labels: ModelLabels, model: str, response_model: str | None) -> tuple[str, str, str, str]:
        p = self.provider
        return ("chat", self.gen_ai_name, labels.label(p, model), labels.label(p, response_model))


class Targets:
    """``TargetInfo`` by target label, for one graph's providers and one ``Metrics``."""

    __slots__ = ("_attrs", "_infos", "labels", "metrics", "providers")

    def __init__(self, labels: ModelLabels, metrics: Metrics | None) -> None:
        self.labels, self.metrics = labels, metrics
        self.providers: dict[str, ProviderInfo] = {}
        self._infos: dict[str, TargetInfo] = {}
        self._attrs: dict[str, dict[str, Any]] = {}

    def use(self, providers: dict[str, ProviderInfo]) -> None:
        """A (reloaded) graph's providers: every cached info is built again on its next use."""
        self.providers = providers
        self._infos = {}
        self._attrs = {name: info.span_attrs() for name, info in providers.items()}

    def provider_attrs(self, provider: str) -> dict[str, Any]:
        """A provider's span attributes (``gen_ai.provider.name``, ``server.*``): not to be changed."""
        attrs = self._attrs.get(provider)
        return attrs if attrs is not None else {"gen_ai.provider.name": provider}

    def get(self, key: str) -> TargetInfo:
        info = self._infos.get(key)
        if info is None:
            info = TargetInfo(key, self.providers, self.labels, self.metrics)
            if len(self._infos) < _LIMIT:
                self._infos[key] = info
        return info
