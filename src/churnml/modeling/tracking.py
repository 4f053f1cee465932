"""MLflow tracking: the store, flattened params and the pyfunc wrapper (the only module that imports mlflow).

Store. ``MLFLOW_TRACKING_URI`` wins when set; otherwise ``sqlite:///<root>/mlflow.db`` with artifacts in
``<root>/mlartifacts``, where ``root`` is :func:`churnml.config.store_root` (which honours ``DVC_ROOT``, so
queued and temporary ``dvc exp run`` copies log to the parent repository's store). With a
``sqlite:///`` URI from the environment, artifacts go beside that database file. mlflow is imported
lazily, after its telemetry is turned off.

The registry and the champion live in :mod:`churnml.modeling.registry`, run logging in
:mod:`churnml.modeling.runs`; both reach mlflow only through this module's :func:`_mlflow`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import pandas as pd

from churnml.config import TrackingConfig, repo_root, store_root
from churnml.errors import ChurnmlError
from churnml.modeling.model import TrainedModel
from churnml.warehouse.secrets import redact_urls_in

# the survival model (churnml.survival) is registered beside the 90-day models, under the same champion rule
REGISTERED_NAMES = {
    "churn": "churnml-churn",
    "expansion": "churnml-expansion",
    "survival": "churnml-survival",
}
MODEL_ARTIFACT = "model"
_PARAM_MAX_CHARS = 6000
_CODE_FILE = "churnml_pyfunc.py"
_CODE = '"""MLflow models-from-code entry point: the churnml calibrated-probability model."""\n\n' + (
    "from churnml.modeling.tracking import set_pyfunc_model\n\nset_pyfunc_model()\n"
)


def _mlflow() -> Any:
    # MLflow looks up a telemetry host on import and on use; nothing leaves this machine
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    # progress bars on stderr for local copies are noise in stage logs
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import mlflow

    return mlflow


# ------------------------------------------------------------------------------------------------- store


def redact_url(text: str) -> str:
    """``text`` with any ``user:password@`` of a URL removed (a bare token is a user name too) and secret query
    parameters (``?password=``) as ``***``; other text unchanged."""
    if "://" not in text:
        return text
    try:
        parts = urlsplit(text)
    except ValueError:
        return redact_urls_in(re.sub(r"//[^/@\s]*@", "//", text))
    if "@" in parts.netloc:
        text = urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))
    return redact_urls_in(text)


def tracking_uri(root: Path, cfg: TrackingConfig) -> str:
    """``MLFLOW_TRACKING_URI`` if set, else ``sqlite:///<root>/<cfg.store>``."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    return f"sqlite:///{(store_root(root) / cfg.store).resolve()}"


def artifact_location(root: Path, cfg: TrackingConfig) -> str | None:
    """Where a new experiment keeps its artifacts (a file URI), or None to let a tracking server decide."""
    uri = tracking_uri(root, cfg)
    if uri.startswith("sqlite:///"):
        db = Path(uri[len("sqlite:///") :])
        folder = (
            store_root(root) / cfg.artifacts
            if "MLFLOW_TRACKING_URI" not in os.environ
            else db.parent / cfg.artifacts
        )
        return folder.resolve().as_uri()
    if "://" not in uri or uri.startswith("file:"):
        return None  # a file store keeps artifacts inside itself
    return None


def _client(root: Path | None, cfg: TrackingConfig, *, existing: bool = False) -> Any:
    """The MLflow client of the store (:func:`tracking_uri`).

    Args:
        existing: the caller only reads the registry (load, promote, roll back, list): a SQLite store that is
            not there is an error naming it, instead of a new empty store created in the working directory
            (run outside the repository, ``churnml promote`` left an ``mlflow.db`` in ``/tmp`` and said the
            model had no version).
    """
    mlflow = _mlflow()
    uri = tracking_uri(root or repo_root(), cfg)
    if existing and uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///") :]).is_file():
        where = uri[len("sqlite:///") :]
        if os.environ.get("MLFLOW_TRACKING_URI"):
            raise ChurnmlError(f"no MLflow store at {where} (MLFLOW_TRACKING_URI): check the variable")
        raise ChurnmlError(
            f"no MLflow store at {where}: run the pipeline first (`make run`), run this from the repository, "
            "or set MLFLOW_TRACKING_URI"
        )
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)


def _experiment_id(client: Any, root: Path, cfg: TrackingConfig) -> str:
    found = client.get_experiment_by_name(cfg.experiment)
    if found is not None:
        return found.experiment_id
    return client.create_experiment(cfg.experiment, artifact_location=artifact_location(root, cfg))


@dataclasses.dataclass(frozen=True)
class RunContext:
    """Where a pipeline run happens: a DVC experiment or the workspace, and whether it may move the champion.

    Attributes:
        experiment: the DVC experiment's name (``DVC_EXP_NAME``, which DVC 3 sets for every ``dvc exp run``:
            queued, temporary or in the workspace), or ``workspace`` for ``dvc repro`` / a stage run by hand.
        branch: the checkout's git branch ("" outside git, ``HEAD`` when detached).
        may_promote: False inside an experiment and on a branch outside ``tracking.promote_branches``.
        why: why not, in a line (empty when it may).
    """

    experiment: str
    branch: str
    may_promote: bool
    why: str = ""


def _git_branch(root: Path) -> str:
    try:
        proc = subprocess.run(
            ["git", "rev-parse", "--abbrev-ref", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return proc.stdout.strip() if proc.returncode == 0 else ""


def run_context(root: Path, cfg: TrackingConfig) -> RunContext:
    """The run's :class:`RunContext`, from DVC's environment and the checkout's branch."""
    experiment = os.environ.get("DVC_EXP_NAME", "")
    branch = _git_branch(Path(root))
    if experiment:
        why = (
            f"DVC experiment {experiment!r} registers candidates only (`churnml promote` moves the champion)"
        )
        return RunContext(experiment, branch, False, why)
    if branch and cfg.promote_branches and branch not in cfg.promote_branches:
        why = f"branch {branch!r} is not one of tracking.promote_branches ({', '.join(cfg.promote_branches)})"
        return RunContext("workspace", branch, False, why)
    return RunContext("workspace", branch, True)


def params_hash(params: Any) -> str:
    """A short, stable hash of the resolved configuration (its flattened params, sorted)."""
    flat = flatten_params(params)
    text = json.dumps(sorted(flat.items()), separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def registered_name(target: str) -> str:
    """The registry name of a target's model."""
    if target not in REGISTERED_NAMES:
        raise ChurnmlError(f"unknown target {target!r}: expected one of {', '.join(REGISTERED_NAMES)}")
    return REGISTERED_NAMES[target]


# ----------------------------------------------------------------------------------------------- params


_PARAM_KEY = re.compile(r"^[A-Za-z0-9_\-. :/]+$")


def flatten_params(params: Any, prefix: str = "") -> dict[str, str]:
    """A nested config (mapping or dataclass) as ``{"model.lgbm.num_leaves": "31", ...}``, URLs redacted."""
    if dataclasses.is_dataclass(params) and not isinstance(params, type):
        params = dataclasses.asdict(params)
    out: dict[str, str] = {}
    if isinstance(params, Mapping) and any(not _PARAM_KEY.match(str(k)) for k in params):
        params = dict(params)  # keys MLflow refuses as names (globs such as usage_*_zscore_*): one JSON value
    elif isinstance(params, Mapping) and (params or not prefix):
        for key, value in params.items():
            out.update(flatten_params(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    text = json.dumps(params, default=str) if isinstance(params, (list, tuple, Mapping)) else str(params)
    out[prefix] = redact_url(text)[:_PARAM_MAX_CHARS]
    return out


def _metric_name(*parts: str) -> str:
    # MLflow metric names: alphanumerics, underscores, dashes, periods, spaces, slashes
    return ".".join(re.sub(r"[^A-Za-z0-9_\-/ ]", "_", p) for p in parts)


def flatten_metrics(document: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> dict[str, float]:
    """The ``metrics_json`` document as MLflow metrics (``test.roc_auc``, ``by_touch_tier.high_touch.emp``)."""
    out: dict[str, float] = {}
    for key, value in document.items():
        path = (*prefix, str(key))
        if isinstance(value, Mapping):
            out.update(flatten_metrics(value, path))
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            out[_metric_name(*path)] = float(value)
    return out


def data_version(path: Path, root: Path | None = None) -> str:
    """The DVC md5 of ``path`` from ``dvc.lock`` when it is a tracked output, else the file's (or folder's) md5."""
    root = Path(root or repo_root())
    path = Path(path)
    lock = root / "dvc.lock"
    if lock.is_file():
        import yaml

        try:
            rel = path.resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            rel = path.as_posix()
        stages = (yaml.safe_load(lock.read_text(encoding="utf-8")) or {}).get("stages", {})
        for stage in stages.values():
            for out in stage.get("outs", []) or []:
                if out.get("path") == rel and out.get("md5"):
                    return str(out["md5"])
    return content_version(path)


def content_version(path: Path) -> str:
    """The md5 of a file, or of a folder's file names and bytes (``.dir`` suffix), from the bytes on disk.

    For an output of the running stage itself: dvc.lock still describes that output's previous run until the
    stage ends, so :func:`data_version` would name the model it replaces.
    """
    path = Path(path)
    if path.is_dir():
        digest = hashlib.md5()
        for file in sorted(f for f in path.rglob("*") if f.is_file()):
            digest.update(file.relative_to(path).as_posix().encode())
            digest.update(file.read_bytes())
        return digest.hexdigest() + ".dir"
    if not path.is_file():
        raise ChurnmlError(f"{path}: no such file (cannot compute its data version)")
    digest = hashlib.md5()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ------------------------------------------------------------------------------------------------ pyfunc


def _pyfunc_class() -> type:
    mlflow = _mlflow()

    class ChurnmlPyfunc(mlflow.pyfunc.PythonModel):
        """Predicts calibrated probabilities with the saved churnml model in the ``model_dir`` artifact."""

        def load_context(self, context: Any) -> None:
            self.model = TrainedModel.load(Path(context.artifacts["model_dir"]))

        def predict(self, context: Any, model_input: pd.DataFrame, params: dict | None = None) -> np.ndarray:
            return self.model.predict_proba(pd.DataFrame(model_input))

    return ChurnmlPyfunc


def set_pyfunc_model() -> None:
    """Declare the churnml pyfunc for MLflow's models-from-code loader (called by the logged code file)."""
    _mlflow().models.set_model(_pyfunc_class()())


def _requirements() -> list[str]:
    import lightgbm
    import sklearn

    mlflow = _mlflow()
    return [
        f"mlflow=={mlflow.__version__}",
        f"lightgbm=={lightgbm.__version__}",
        f"pandas=={pd.__version__}",
        f"numpy=={np.__version__}",
        f"scikit-learn=={sklearn.__version__}",
        "churnml",  # this project, installed from its repository
    ]
