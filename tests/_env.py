"""System dependencies of tests (PostgreSQL, Chromium, Java): under CI a missing one fails, elsewhere skips.

DESIGN.md, Environment: when ``CI`` is set, a test whose system dependency is missing FAILS (CI must prove
everything); elsewhere it is skipped with the reason. Call these from fixtures.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

PG_ENV = "CHURNML_PG_URL"


def _missing(reason: str) -> None:
    """Fail under CI, skip elsewhere; either way say why."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set, so this dependency is required)", pytrace=False)
    pytest.skip(reason)


def require_postgres() -> str:
    """The SQLAlchemy URL in ``CHURNML_PG_URL`` once a server answers there (password never shown)."""
    url = os.environ.get(PG_ENV, "")
    if not url:
        _missing(f"{PG_ENV} is not set: PostgreSQL tests need a server")
    import sqlalchemy as sa

    from churnml.warehouse.secrets import redact_url, scrub_secrets

    try:
        engine = sa.create_engine(url, connect_args={"connect_timeout": 5})
        try:
            with engine.connect() as conn:
                conn.execute(sa.text("select 1"))
        finally:
            engine.dispose()
    except Exception as exc:  # any driver or connection error means "no usable server"
        first = str(getattr(exc, "orig", exc)).strip().splitlines()[:1]
        detail = scrub_secrets("".join(first)[:200], url)
        _missing(f"PostgreSQL at {redact_url(url)} is not reachable ({type(exc).__name__}: {detail})")
    return url


def require_chromium() -> str:
    """Path of a headless-capable Chromium/Chrome binary."""
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    _missing("Chromium is not installed (looked for chromium, chromium-browser, google-chrome)")
    raise AssertionError("unreachable")


def require_java() -> str:
    """Path of a working ``java`` (Spark needs it)."""
    path = shutil.which("java")
    if path is None and os.environ.get("JAVA_HOME"):
        candidate = os.path.join(os.environ["JAVA_HOME"], "bin", "java")
        path = candidate if os.access(candidate, os.X_OK) else None
    if path is None:
        _missing("Java is not installed (no java on PATH or in JAVA_HOME)")
    try:
        subprocess.run([path, "-version"], capture_output=True, check=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        _missing(f"java at {path} does not run ({type(exc).__name__})")
    return path
