"""The registry record: evaluate's file that stands for a registration DVC cannot see.

Registering a model in MLflow is a side effect outside DVC; this small JSON file is the evaluate stage's
output for it, so a fresh clone (metrics in git, registry empty) re-runs evaluate before scoring asks for
the champion.
"""

from __future__ import annotations

import json
from pathlib import Path


def registry_record(target: str, run_id: str, version: str | None) -> dict[str, str | None]:
    """The record of one registration: target, MLflow run id and registered version (None: not registered)."""
    return {"target": target, "run_id": run_id, "version": version}


def write_registry_record(path: Path, target: str, run_id: str, version: str | None) -> None:
    """Write the record of one registration as JSON."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(registry_record(target, run_id, version), indent=2) + "\n")
