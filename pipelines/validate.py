"""Stage validate: the input tables checked against the contract; bad rows fail the run or are quarantined."""

import json
import logging

from churnml.config import load_config, repo_root
from churnml.contract.io import read_folder, write_folder
from churnml.contract.validate import validate_tables
from churnml.stage import run_stage

log = logging.getLogger("validate")


def main() -> None:
    cfg = load_config()
    root = repo_root()
    result = validate_tables(read_folder(root / cfg.data.input_dir), quarantine=cfg.data.quarantine)
    write_folder(result.tables, root / cfg.paths.validated)
    quarantine = root / cfg.paths.quarantine
    write_folder(result.quarantined, quarantine)
    (quarantine / "counts.json").write_text(json.dumps(result.counts(), indent=2) + "\n")
    log.info("rows per table: %s", result.counts())


if __name__ == "__main__":
    run_stage(main)
