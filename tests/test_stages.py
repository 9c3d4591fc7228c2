import json

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
