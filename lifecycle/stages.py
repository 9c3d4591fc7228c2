"""The stage model: stages and the edges between them, as data.

A business can supply its own model file (JSON, same shape as
``default_stage_model.json``); it is validated when loaded so that a broken
model stops the engine at start-up with a message that says what to fix,
instead of refusing events later.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from lifecycle.errors import StageModelError

#: The guards an edge may name. Each is a behaviour the rules can observe
#: (see ``lifecycle.rules``), or ``request`` for an explicit upstream request.
GUARDS: frozenset[str] = frozenset(
    {
        "interaction",  # any interaction recorded
        "registered",  # the customer registered
        "bant_passed",  # a BANT qualification with all four criteria met
        "bant_failed",  # a BANT qualification that failed
        "opted_out",  # consent withdrawn for all contact
        "purchase",  # a purchase (first one, or after churn)
        "repeat_purchase_day",  # a purchase on a calendar day after the first purchase day
        "deal_won",  # a deal of this customer was won
        "promoter_score",  # NPS feedback of 9 or 10
        "referral",  # the customer referred someone
        "inactive",  # the sweep found no activity for `inactivity_days`
        "request",  # upstream asked for this transition explicitly
    }
)


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    guards: frozenset[str]
    reason: str


@dataclass(frozen=True)
class Stage:
    name: str
    description: str


@dataclass(frozen=True)
class StageModel:
    name: str
    initial: str
    inactivity_days: int
    stages: tuple[Stage, ...]
    main_sequence: tuple[str, ...]
    edges: tuple[Edge, ...]
    # The first edge each (source, guard) opens: the rules ask for one with every fact a fold
    # takes, on ingest and in the projections alike, and a scan of every edge was most of it.
    _first_edge: dict[tuple[str, str], Edge] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        first: dict[tuple[str, str], Edge] = {}
        for edge in self.edges:
            for guard in edge.guards:
                first.setdefault((edge.source, guard), edge)
        object.__setattr__(self, "_first_edge", first)

    @property
    def stage_names(self) -> tuple[str, ...]:
        return tuple(stage.name for stage in self.stages)

    def edge(self, source: str, guard: str, target: str | None = None) -> Edge | None:
        """The first edge leaving ``source`` that ``guard`` opens (to ``target`` if given)."""
        if target is None:
            return self._first_edge.get((source, guard))
        for edge in self.edges:
            if edge.source == source and guard in edge.guards:
                if target is None or edge.target == target:
                    return edge
        return None

    def next_in_sequence(self, stage: str) -> str | None:
        seq = self.main_sequence
        if stage in seq and seq.index(stage) + 1 < len(seq):
            return seq[seq.index(stage) + 1]
        return None


def parse_stage_model(document: object, origin: str = "stage model") -> StageModel:
    """Build and validate a model from a decoded JSON document."""
    if not isinstance(document, dict):
        raise StageModelError(f"{origin}: expected a JSON object")
    try:
        stages = tuple(
            Stage(name=str(s["name"]), description=str(s.get("description", "")))
            for s in document["stages"]
        )
        edges = tuple(
            Edge(
                source=source,
                target=str(e["to"]),
                guards=frozenset(_as_list(e["when"])),
                reason=str(e.get("reason", e["to"])),
            )
            for e in document["edges"]
            for source in _as_list(e["from"])
        )
        model = StageModel(
            name=str(document.get("name", "custom")),
            initial=str(document["initial"]),
            inactivity_days=int(document.get("inactivity_days", 180)),
            stages=stages,
            main_sequence=tuple(_as_list(document.get("main_sequence", [s.name for s in stages]))),
            edges=edges,
        )
    except (KeyError, TypeError, ValueError) as e:
        raise StageModelError(f"{origin}: missing or malformed field {e}") from e
    _validate(model, origin)
    return model


def load_stage_model(path: str | Path | None = None) -> StageModel:
    """Load the model from ``path``, or the default model shipped with the package."""
    if path is None:
        text = resources.files("lifecycle").joinpath("default_stage_model.json").read_text()
        return parse_stage_model(json.loads(text), "default stage model")
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise StageModelError(f"cannot read stage model {path}: {e.strerror}") from e
    except json.JSONDecodeError as e:
        raise StageModelError(f"stage model {path} is not valid JSON: {e}") from e
    return parse_stage_model(document, str(path))


def _as_list(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, Iterable):
        return [str(v) for v in value]
    raise TypeError(f"expected a string or a list, got {value!r}")


def _validate(model: StageModel, origin: str) -> None:
    names = model.stage_names
    if len(set(names)) != len(names):
        raise StageModelError(f"{origin}: a stage is listed twice")
    if model.initial not in names:
        raise StageModelError(f"{origin}: initial stage '{model.initial}' is not a stage")
    if model.inactivity_days < 1:
        raise StageModelError(f"{origin}: inactivity_days must be at least 1")
    for stage in model.main_sequence:
        if stage not in names:
            raise StageModelError(f"{origin}: main_sequence names unknown stage '{stage}'")
    for edge in model.edges:
        for end in (edge.source, edge.target):
            if end not in names:
                raise StageModelError(
                    f"{origin}: edge {edge.source} -> {edge.target} names unknown stage '{end}'"
                )
        unknown = sorted(edge.guards - GUARDS)
        if unknown:
            raise StageModelError(
                f"{origin}: edge {edge.source} -> {edge.target} uses unknown guard "
                f"'{unknown[0]}' (known: {', '.join(sorted(GUARDS))})"
            )
        if not edge.guards:
            raise StageModelError(f"{origin}: edge {edge.source} -> {edge.target} has no guard")
    reachable = {model.initial}
    frontier = [model.initial]
    while frontier:
        here = frontier.pop()
        for edge in model.edges:
            if edge.source == here and edge.target not in reachable:
                reachable.add(edge.target)
                frontier.append(edge.target)
    unreachable = [n for n in names if n not in reachable]
    if unreachable:
        raise StageModelError(
            f"{origin}: stage '{unreachable[0]}' cannot be reached from '{model.initial}'"
        )
