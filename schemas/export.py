"""JSON Schema files for producers in other languages, generated from the models.

One file per (event type, data version), ``<type>.v<version>.schema.json``:
the envelope with that version's ``data`` embedded; plus
``envelope.schema.json``, the generic envelope; and ``outbound.v1.schema.json``,
the messages of ``lifecycle.events``. Output is deterministic
(sorted keys, indent 2, trailing newline), so committed copies can be
compared with freshly generated ones.
"""

import json
from pathlib import Path
from typing import Any

from schemas.envelope import Envelope, envelope_model
from schemas.outbound import OUTBOUND_SCHEMA_VERSION, OutboundEvent
from schemas.versions import DATA_MODELS, LATEST_VERSION

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def schema_documents() -> dict[str, dict[str, Any]]:
    """File name -> JSON Schema document, for every file :func:`export_json_schemas` writes."""
    envelope = Envelope.model_json_schema(mode="validation")
    envelope["title"] = "CloudEvents 1.0 envelope (any event type)"
    documents = {"envelope.schema.json": envelope}
    for event_type, versions in DATA_MODELS.items():
        for version in versions:
            schema = envelope_model(event_type, version).model_json_schema(mode="validation")
            status = "latest" if version == LATEST_VERSION[event_type] else "old, upcast on arrival"
            schema["title"] = f"{event_type} v{version} ({status})"
            documents[f"{event_type}.v{version}.schema.json"] = schema
    outbound = OutboundEvent.model_json_schema(mode="validation")
    documents[f"outbound.v{OUTBOUND_SCHEMA_VERSION}.schema.json"] = outbound
    for name, schema in documents.items():
        schema["$schema"] = JSON_SCHEMA_DIALECT
        schema["$id"] = name
    return documents


def render(document: dict[str, Any]) -> str:
    """The exact text written for one schema document."""
    return json.dumps(document, sort_keys=True, indent=2, ensure_ascii=True) + "\n"


def export_json_schemas(directory: Path) -> list[Path]:
    """Write the JSON Schemas into ``directory`` (created if missing); return the paths, sorted."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, document in sorted(schema_documents().items()):
        path = directory / name
        path.write_text(render(document), encoding="utf-8", newline="\n")
        written.append(path)
    return written
