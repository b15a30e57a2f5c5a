"""Providers in, their model listings out: each kind's listing endpoint, fetched through a callable
the transport supplies, merged with the models routes.yaml declares, cached for cache.models.ttl."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any

from engine.graph import Price, Provider
from engine.providers import Kind, get_kind
from engine.runtime.state.base import Store
from engine.runtime.state.flight import SingleFlight
from engine.runtime.transport import identity
from engine.values import Secret

__all__ = ["Fetch", "ListedModel", "ModelListing", "ModelRegistry", "RegistryStats"]

Fetch = Callable[[Provider, str], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class ListedModel:
    name: str
    listed: bool  # the provider's listing names it
    declared: bool  # routes.yaml declares it (context and price come from there)
    context: int | None = None
    price: Price | None = None


@dataclass(frozen=True, slots=True)
class ModelListing:
    """Declared models first (in config order), then the rest of the listing (in its order)."""

    provider: str
    models: tuple[ListedModel, ...]
    cached: bool = False

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.models)

    def __contains__(self, name: object) -> bool:
        return any(m.name == name for m in self.models)


@dataclass(frozen=True, slots=True)
class RegistryStats:
    hits: int
    misses: int
    size: int  # listings this instance knows to be cached now (shared backends may hold more)
    errors: int


class ModelRegistry:
    """The registry never opens a connection or sees an API key: ``fetch(provider, url)`` does the
    GET with the provider's client and auth headers and returns the decoded JSON (raising the
    transport's errors). Concurrent lookups of one provider share one lookup and fetch."""

    def __init__(
        self, store: Store, fetch: Fetch | None, *, ttl: float, kind_of: Callable[[str], Kind] = get_kind
    ) -> None:
        self.fetch = fetch
        self.ttl = ttl
        self._store = store
        self._kind_of = kind_of
        self._flights = SingleFlight()
        self._expiry: dict[str, float] = {}  # store key -> monotonic expiry, for ``size``
        self.hits = self.misses = self.errors = 0

    async def list_models(self, provider: Provider, *, refresh: bool = False) -> ModelListing:
        """The provider's models; ``refresh`` skips the cache. Raises the fetch's error, or the
        kind's ``WireError`` for a listing it cannot parse."""
        key = _key(provider, self._kind_of(provider.kind))
        if refresh:
            names = await self._flights.do(key + ":refresh", partial(self._fetch, provider, key))
            cached = False
        else:
            # lookup and fetch in one flight: concurrent callers share both, and none can miss
            # a listing stored just before its own lookup would have started
            names, cached = await self._flights.do(key, partial(self._lookup, provider, key))
        if cached:
            self.hits += 1
        else:
            self.misses += 1
        return _merge(provider, names, cached=cached)

    async def _lookup(self, provider: Provider, key: str) -> tuple[list[str], bool]:
        names = await self._store.get(key)
        if names is not None:
            self._expiry.setdefault(key, time.monotonic() + self.ttl)
            return names, True
        return await self._fetch(provider, key), False

    async def list_models_many(
        self,
        providers: Iterable[Provider],
        *,
        max_concurrency: int = 10,
        timeout: float | None = None,
    ) -> dict[str, ModelListing | Exception]:
        """Every provider's listing, at most ``max_concurrency`` fetches at once, each bounded by
        ``timeout`` seconds; a provider that fails maps to its exception (``TimeoutError`` on
        timeout) and does not stop the others. Keys are in the order given."""
        sem = asyncio.Semaphore(max(1, max_concurrency))

        async def one(p: Provider) -> ModelListing | Exception:
            async with sem:
                try:
                    async with asyncio.timeout(timeout):
                        return await self.list_models(p)
                except Exception as exc:
                    return exc

        ps = list(providers)
        results = await asyncio.gather(*(one(p) for p in ps))
        return {p.name: r for p, r in zip(ps, results, strict=True)}

    async def invalidate(self, provider: Provider) -> None:
        key = _key(provider, self._kind_of(provider.kind))
        self._expiry.pop(key, None)
        await self._store.delete(key)

    async def clear(self) -> None:
        self._expiry.clear()
        await self._store.clear()

    def stats(self) -> RegistryStats:
        now = time.monotonic()
        for key in [k for k, t in self._expiry.items() if t <= now]:
            del self._expiry[key]
        return RegistryStats(self.hits, self.misses, len(self._expiry), self.errors)

    async def _fetch(self, provider: Provider, key: str) -> list[str]:
        if self.fetch is None:
            raise RuntimeError("the model registry has no fetch function (the engine supplies one)")
        kind = self._kind_of(provider.kind)
        try:
            names = [
                str(n) for n in kind.parse_models(await self.fetch(provider, _models_url(kind, provider)))
            ]
        except Exception:
            self.errors += 1
            raise
        await self._store.set(key, names, self.ttl)
        self._expiry[key] = time.monotonic() + self.ttl
        return names


def _models_url(kind: Kind, provider: Provider) -> str:
    base = provider.base_url
    # The URL goes only to ``fetch`` (the transport), never into a result, log or error here.
    return kind.models_url(base.reveal() if isinstance(base, Secret) else base)


def _key(provider: Provider, kind: Kind) -> str:
    """Provider name plus its endpoint's identity (kind, base URL, a digest of the credentials):
    a changed endpoint or key is a new entry, and another deployment's listing never answers."""
    return f"{provider.name}:{identity(provider, kind)}"


def _merge(provider: Provider, listed: Iterable[str], *, cached: bool) -> ModelListing:
    names = list(dict.fromkeys(listed))
    seen = set(names)
    models = [ListedModel(m.name, m.name in seen, True, m.context, m.price) for m in provider.models.values()]
    declared = set(provider.models)
    models += [ListedModel(n, True, False) for n in names if n not in declared]
    return ModelListing(provider.name, tuple(models), cached)
