import json
from importlib import resources

import pytest

from lifecycle.errors import StageModelError
from lifecycle.stages import GUARDS, load_stage_model


def test_default_model_loads_with_the_design_stages():
    model = load_stage_model()
    assert model.initial == "awareness"
    assert set(model.stage_names) == {
        "awareness", "engagement", "qualified", "customer", "retained", "advocate", "churned", "disqualified",
    }
    assert all(edge.guards <= GUARDS for edge in model.edges)


def _write(tmp_path, document):
    path = tmp_path / "model.json"
    path.write_text(json.dumps(document))
    return path


def _minimal(**changes):
    doc = {
        "initial": "lead",
        "stages": [{"name": "lead"}, {"name": "buyer"}],
        "edges": [{"from": "lead", "to": "buyer", "when": ["purchase"]}],
    }
    doc.update(changes)
    return doc


def test_a_custom_model_loads(tmp_path):
    model = load_stage_model(_write(tmp_path, _minimal()))
    assert model.edge("lead", "purchase").target == "buyer"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"edges": [{"from": "lead", "to": "nowhere", "when": ["purchase"]}]}, "unknown stage 'nowhere'"),
        ({"edges": [{"from": "lead", "to": "buyer", "when": ["telepathy"]}]}, "unknown guard 'telepathy'"),
        ({"stages": [{"name": "lead"}, {"name": "buyer"}, {"name": "island"}]}, "stage 'island' cannot be reached"),
        ({"initial": "ghost"}, "initial stage 'ghost'"),
        ({"edges": [{"from": "lead", "to": "buyer", "when": []}]}, "has no guard"),
        ({"stages": "nope"}, "malformed"),
    ],
)
def test_an_inconsistent_model_is_refused_with_a_clear_message(tmp_path, changes, message):
    with pytest.raises(StageModelError, match=message):
        load_stage_model(_write(tmp_path, _minimal(**changes)))


def test_unreadable_or_invalid_json_model_files(tmp_path):
    with pytest.raises(StageModelError, match="cannot read"):
        load_stage_model(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(StageModelError, match="not valid JSON"):
        load_stage_model(bad)


def test_a_custom_model_drives_the_engine(tmp_path):
    from lifecycle.engine import LifecycleEngine
    from tests.events import purchase, request

    doc = _minimal(
        stages=[{"name": "lead"}, {"name": "buyer"}, {"name": "lapsed"}],
        edges=[
            {"from": "lead", "to": "buyer", "when": ["purchase"], "reason": "bought"},
            {"from": "buyer", "to": "lapsed", "when": ["request", "inactive"]},
        ],
    )
    engine = LifecycleEngine(env={"PERSISTENCE_MODULE": "eventsourcing.popo"}, model=load_stage_model(_write(tmp_path, doc)))
    engine.ingest([purchase("shop:1", "2026-01-01T10:00:00Z", "o-1")])
    assert engine.customer("shop:1").stage == "buyer"
    refused = engine.ingest([request("shop:1", "2026-01-02T10:00:00Z", "lead")])
    assert refused.rejected == 1
    engine.ingest([request("shop:1", "2026-01-03T10:00:00Z", "lapsed")])
    assert engine.customer("shop:1").stage == "lapsed"


def test_the_cli_refuses_to_start_with_a_broken_model(tmp_path):
    from tests.test_cli import lifecycle

    path = _write(tmp_path, _minimal(edges=[{"from": "lead", "to": "buyer", "when": ["telepathy"]}]))
    done = lifecycle(tmp_path, "report", "funnel", LIFECYCLE_STAGE_MODEL=str(path))
    assert done.returncode == 2
    assert b"unknown guard 'telepathy'" in done.stderr and b"Traceback" not in done.stderr


def test_the_edge_a_guard_opens_is_the_first_in_the_model_file(tmp_path):
    """``edge`` answers from a table built at load: the same edge as a scan of the edges in
    their order, for every stage and guard, where two edges share a source and a guard too."""
    doc = json.loads(resources.files("lifecycle").joinpath("default_stage_model.json").read_text())
    first = doc["edges"][0]
    doc["edges"].append({**first, "to": doc["stages"][-1]["name"], "reason": "a later duplicate"})
    path = tmp_path / "model.json"
    path.write_text(json.dumps(doc))
    for model in (load_stage_model(), load_stage_model(path)):
        for source in model.stage_names:
            for guard in sorted(GUARDS):
                scanned = next((e for e in model.edges if e.source == source and guard in e.guards), None)
                assert model.edge(source, guard) == scanned
                for target in model.stage_names:
                    wanted = next((e for e in model.edges if e.source == source and guard in e.guards
                                   and e.target == target), None)
                    assert model.edge(source, guard, target) == wanted
