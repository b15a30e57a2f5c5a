"""Label values: a provider's ``gen_ai.provider.name`` and model names of bounded cardinality.

``gen_ai.provider.name`` is spelled as the OpenTelemetry GenAI conventions list it (``openai``,
``anthropic``, ``gcp.gemini``, ``groq``, ...), read from the provider's base URL host, else its
kind; ``telemetry.provider_names`` in routes.yaml wins over both. A host outside the list keeps the
kind's name: the conventions name the API a client speaks when the host is unknown.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final
from urllib.parse import urlsplit

from engine.graph import Provider, RoutingGraph
from engine.result import Attempt
from engine.values import Secret

__all__ = [
    "KIND_NAMES",
    "WELL_KNOWN",
    "WIRE_OUTCOMES",
    "ModelLabels",
    "error_type",
    "provider_name",
    "server_address",
]

WELL_KNOWN: Final = frozenset(
    {
        "anthropic",
        "aws.bedrock",
        "azure.ai.inference",
        "azure.ai.openai",
        "cohere",
        "deepseek",
        "gcp.gemini",
        "gcp.gen_ai",
        "gcp.vertex_ai",
        "groq",
        "ibm.watsonx.ai",
        "mistral_ai",
        "openai",
        "perplexity",
        "x_ai",
    }
)
"""The conventions' well-known ``gen_ai.provider.name`` values."""

KIND_NAMES: Final[Mapping[str, str]] = {
    "openai": "openai",
    "anthropic": "anthropic",
    "gemini": "gcp.gemini",
    "ollama": "ollama",
}

# host suffix -> name; the first match wins (more specific suffixes first)
_HOSTS: Final = (
    ("openai.azure.com", "azure.ai.openai"),
    ("models.inference.ai.azure.com", "azure.ai.inference"),
    ("services.ai.azure.com", "azure.ai.inference"),
    ("api.openai.com", "openai"),
    ("api.anthropic.com", "anthropic"),
    ("generativelanguage.googleapis.com", "gcp.gemini"),
    ("aiplatform.googleapis.com", "gcp.vertex_ai"),
    ("amazonaws.com", "aws.bedrock"),
    ("api.groq.com", "groq"),
    ("api.mistral.ai", "mistral_ai"),
    ("api.deepseek.com", "deepseek"),
    ("api.x.ai", "x_ai"),
    ("api.perplexity.ai", "perplexity"),
    ("api.cohere.com", "cohere"),
    ("api.cohere.ai", "cohere"),
    ("ml.cloud.ibm.com", "ibm.watsonx.ai"),
    # custom values (not in the conventions' list), as the OpenAI-compatible hosts call themselves
    ("api.together.xyz", "together_ai"),
    ("api.fireworks.ai", "fireworks_ai"),
    ("openrouter.ai", "openrouter"),
)

DEFAULT_MODEL_LIMIT: Final = 64

WIRE_OUTCOMES: Final = frozenset({"ok", "retry", "failover", "fatal", "deadline", "cancelled"})
"""The outcomes of a try that reached a provider: a GenAI operation."""


def error_type(attempt: Attempt) -> str | None:
    """``error.type`` of a try: the HTTP status of a status error, else its ``ErrorKind``."""
    if attempt.kind is None:
        return None
    if attempt.kind == "status" and attempt.status is not None:
        return str(attempt.status)
    return attempt.kind


def _host(base_url: str | Secret) -> str:
    url = base_url.reveal() if isinstance(base_url, Secret) else base_url
    try:
        return (urlsplit(url).hostname or "").lower()
    except ValueError:
        return ""


def provider_name(provider: Provider, explicit: Mapping[str, str] | None = None) -> str:
    """The provider's ``gen_ai.provider.name``. A base URL from the environment is read only to
    pick one of the names above: its host never becomes a label."""
    if explicit and provider.name in explicit:
        return explicit[provider.name]
    host = _host(provider.base_url)
    for suffix, name in _HOSTS:
        if host == suffix or host.endswith("." + suffix):
            return name
    return KIND_NAMES.get(provider.kind, provider.kind)


def server_address(provider: Provider) -> tuple[str, int] | None:
    """``server.address`` and ``server.port`` of a provider, or ``None`` when its base URL is a
    secret (read from the environment: it may be private) or unreadable."""
    if isinstance(provider.base_url, Secret):
        return None
    try:
        parts = urlsplit(provider.base_url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return None
    return (parts.hostname, port) if parts.hostname else None


class ModelLabels:
    """Model label values of bounded cardinality. Models written in routes.yaml are always their
    own label; other names (a pass-through target sends the client's own) are kept as they come
    until ``limit`` of them were seen for a provider, then folded to ``PROVIDER/*``."""

    __slots__ = ("_known", "_limit", "_seen")

    def __init__(self, limit: int = DEFAULT_MODEL_LIMIT) -> None:
        self._limit = limit
        self._known: frozenset[str] = frozenset()
        self._seen: dict[str, set[str]] = {}

    def use_graph(self, graph: RoutingGraph) -> None:
        """Every model the graph names (provider models, target models) is known."""
        self._known = frozenset(_written_models(graph))

    def label(self, provider: str, model: str | None) -> str:
        if not model:
            return ""
        if model in self._known:
            return model
        seen = self._seen.get(provider)
        if seen is None:
            seen = self._seen[provider] = set()
        if model in seen:
            return model
        if len(seen) < self._limit:
            seen.add(model)
            return model
        return f"{provider}/*"


def _written_models(graph: RoutingGraph) -> Iterable[str]:
    for p in graph.providers.values():
        yield from p.models
    for r in graph.routes:
        yield from (t.model for t in r.targets if t.model is not None)
