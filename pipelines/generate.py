"""Stage generate: the default data, a synthetic SaaS portfolio, with its ground truth apart."""

import logging

from churnml.config import load_config, repo_root
from churnml.sources.simulate import generate
from churnml.stage import run_stage

log = logging.getLogger("generate")


def main() -> None:
    cfg = load_config()
    root = repo_root()
    summary = generate(cfg.simulator, root / cfg.paths.raw, root / cfg.paths.truth)
    log.info("wrote %s", summary.get("rows"))


if __name__ == "__main__":
    run_stage(main)
