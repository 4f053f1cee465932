"""The registry record: evaluate's file that stands for a registration DVC cannot see.

Registering a model in MLflow is a side effect outside DVC; this small JSON file is the evaluate stage's
output for it, so a fresh clone (metrics in git, registry empty) re-runs evaluate before scoring asks for
the champion.
"""

from __future__ import annotations

import json
from pathlib import Path


def registry_record(target: str, model: str, data_version: str, registered: bool) -> dict[str, str | bool]:
    """The record of one registration: what was registered (the model folder's and the features' versions).

    No MLflow run id or registry version: those differ in every store, and the record's hash is in the
    committed dvc.lock, which a fresh clone's run must leave unchanged. MLflow finds them by the tags
    ``data_version`` and ``dvc_experiment`` of the run and the version.
    """
    return {"target": target, "model": model, "data_version": data_version, "registered": registered}


def write_registry_record(path: Path, target: str, model: str, data_version: str, registered: bool) -> None:
    """Write the record of one registration as JSON."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = registry_record(target, model, data_version, registered)
    path.write_text(json.dumps(record, indent=2) + "\n")
