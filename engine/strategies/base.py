"""What a strategy is: its name and description (schema, docs), its plan text and Mermaid labels,
its compile-time checks, and the ordering of a group's members for one request.

Standard library only (the compile half and the runtime both read it). The runtime hands each
strategy an ``Env`` once per group and graph; ``prepare`` turns it into an ``Order``, the
function called once per request that reaches the group.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol

if TYPE_CHECKING:
    from engine.graph import Group, Member

__all__ = ["Env", "GroupShape", "Observed", "Order", "Path_", "Report", "Strategy"]

Path_ = tuple[str | int, ...]
# (the requested model, the normalised request) -> member indexes in the order to try them
Order = Callable[[str, Mapping[str, Any]], Sequence[int]]


class Report(Protocol):
    """The compiler's ``report``: a problem located at ``path`` in routes.yaml."""

    def __call__(
        self,
        path: Path_,
        message: str,
        hint: str = "",
        *,
        key: bool = False,
        severity: Literal["error", "warning"] = "error",
        shown: Path_ | None = None,
    ) -> None: ...


class GroupShape(Protocol):
    """A group as written (``schema.GroupSpec``), before its names are resolved."""

    @property
    def strategy(self) -> str: ...

    @property
    def hedge_after(self) -> float | None: ...


class Observed(Protocol):
    """What the runtime has observed per member key (``group>member``), shared by every graph
    of one engine: latency scores, when each was last heard from, requests in flight."""

    @property
    def seen(self) -> Mapping[str, float]: ...

    @property
    def busy(self) -> Mapping[str, int]: ...

    def score(self, key: str) -> float: ...


@dataclass(frozen=True, slots=True)
class Env:
    """What an ``Order`` may read: the members' observation keys, the engine's (seedable)
    random generator, the observations, and the estimate of a request's input tokens (the rate
    limiter's)."""

    keys: tuple[str, ...]
    rng: random.Random
    observed: Observed
    input_tokens: Callable[[Mapping[str, Any]], int]


class Strategy(ABC):
    """One strategy. Subclasses set the class attributes and override ``prepare``; the checks
    and labels have defaults most strategies keep."""

    name: ClassVar[str]
    description: ClassVar[str]  # one line for the schema and the reference
    policy: ClassVar[str]  # the plan's "order:" line
    fixed_order: ClassVar[bool] = False  # every request tries the members in the order written
    races: ClassVar[bool] = False  # the executor races the members (hedged)
    timed: ClassVar[bool] = False  # the executor observes each member's latency
    counts_busy: ClassVar[bool] = False  # the executor counts each member's requests in flight

    @abstractmethod
    def prepare(self, group: Group, env: Env) -> Order:
        """The ordering of ``group``'s members, built once per group and graph."""

    def check(self, spec: GroupShape, path: Path_, report: Report) -> None:
        """Problems of a group as written; by default ``hedge_after`` is ignored with a warning."""
        if spec.hedge_after is not None:
            report(
                (*path, "hedge_after"),
                f"hedge_after is ignored by strategy {self.name}",
                "remove it, or use strategy: hedged",
                severity="warning",
            )

    def check_group(self, group: Group, path: Path_, report: Report) -> None:  # noqa: B027 (a hook)
        """Problems of a group whose members are resolved (none by default)."""

    def node_label(self, group: Group) -> str:
        """The second line of the group's Mermaid node."""
        return self.name

    def edge_label(self, group: Group, position: int, member: Member) -> str:
        """The label of the Mermaid edge to member ``position`` (1-based)."""
        return self.name

    def plan_member(self, group: Group, member: Member, model: str) -> dict[str, Any]:
        """What the plan of a request for ``model`` shows of a member besides its target
        (JSON-ready)."""
        return {}


def in_order(n: int) -> Order:
    """The members as written, every request (the order object is shared, never mutated)."""
    written = range(n)
    return lambda model, request: written
