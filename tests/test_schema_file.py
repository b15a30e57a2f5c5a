"""The shipped routes.schema.json (for editors) is what `engine schema` prints today."""

import json
from pathlib import Path

from engine.schema import json_schema


def test_shipped_schema_is_current() -> None:
    shipped = json.loads((Path(__file__).parent.parent / "routes.schema.json").read_text())
    assert shipped == json_schema(), "run: engine schema -o routes.schema.json"


def test_schema_documents_every_provider_field() -> None:
    provider = json_schema()["$defs"]["ProviderSpec"]["properties"]
    undocumented = [k for k, v in provider.items() if "description" not in v]
    assert undocumented == []
