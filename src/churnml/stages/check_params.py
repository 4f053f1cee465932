"""Stage check_params: refuse a ``dvc repro`` whose params.yaml no longer matches what conf/ composes to.

DVC composes conf/ into params.yaml only on ``dvc exp run`` (treeverse/dvc#10750). Every stage refuses stale
parameters when it runs, but after an edit under conf/ alone no stage has anything to run, and ``dvc repro``
would say "up to date" against an edit it never saw. This stage depends on conf/ and params.yaml, so such an
edit re-runs it, and it fails in one line until ``make params`` (then it passes in about a second).
"""

from __future__ import annotations

from pathlib import Path

from churnml.config import CONF_DIR, PARAMS_FILE, Config


def check_params(cfg: Config, root: Path) -> str:
    """Nothing to do: :func:`churnml.config.load_config` has already refused stale parameters."""
    return f"{PARAMS_FILE} matches {root.name}/{CONF_DIR}/ ({len(vars(cfg))} sections)"
