"""Stage score: every active account at the as-of date scored by the champion models, written to the warehouse.

Schedulers call the same package function through `churnml score --as-of DATE [--data DIR | --source-url URL]`.
"""

from __future__ import annotations

from pathlib import Path

from churnml.config import Config
from churnml.contract.io import write_document, write_output
from churnml.scoring.batch import load_tables, score_accounts, score_watermark
from churnml.warehouse.store import Warehouse


def score(cfg: Config, root: Path) -> str:
    """Score the validated tables at ``scoring.as_of`` (default the data end); write ``paths.scores``, this
    week's ``paths.call_list`` and the tier cut-offs used (``paths.tiers``) too.

    Then ``paths.score_watermark``: every (as-of, model versions) the warehouse holds, which the monitor
    stage depends on instead of re-running on every ``dvc repro``.
    """
    tables = load_tables(root / cfg.paths.validated, None, cfg.data)
    result = score_accounts(tables, cfg, as_of=cfg.scoring.as_of, root=root)
    write_output(result.scores, root / cfg.paths.scores, "scores")
    write_output(result.call_list, root / cfg.paths.call_list, "call_list")
    write_document(result.tiers.to_dict(), root / cfg.paths.tiers, "tiers")
    with Warehouse.from_config(cfg.warehouse, root=root) as warehouse:
        runs = warehouse.read_runs()
    write_document(score_watermark(runs), root / cfg.paths.score_watermark, "score_watermark")
    return f"scored {len(result.scores)} accounts as of {result.as_of.date()} with {result.versions}"
