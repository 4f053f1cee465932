"""Stage check_params: the gate every other stage stands behind, so a bad parameter stops the run before any
stage deletes an output.

``dvc exp run -S`` composes ``params.yaml`` itself (a ``+new.key`` passes Hydra) and DVC removes a stage's
outputs before running it; a stage that then failed on the parameters had already lost them. This stage
tracks every parameter, runs first (every stage depends on its stamp), and validates ``params.yaml`` against
the schema (unknown keys named with the closest valid one) and against ``conf/`` (stale parameters). The
stamp's text never changes, so its re-runs do not re-run anything downstream.
"""

from __future__ import annotations

from pathlib import Path

from churnml.config import Config

STAMP_TEXT = "params.yaml checked against the schema and conf/\n"


def check_params(cfg: Config, root: Path) -> str:
    """Write the stamp (``cfg`` was loaded, hence checked, by the caller)."""
    stamp = root / cfg.paths.params_check
    stamp.parent.mkdir(parents=True, exist_ok=True)
    if not stamp.is_file() or stamp.read_text(encoding="utf-8") != STAMP_TEXT:
        stamp.write_text(STAMP_TEXT, encoding="utf-8")
    return "parameters valid and fresh"
