"""Adapters that map third-party data layouts onto the churnml data contract (``churnml ingest``).

Each adapter reads a source folder, maps it faithfully onto the contract's tables and reports every row
it could not carry (nothing is dropped silently). It does not judge the data: rows that break the
contract are left for :func:`churnml.contract.validate.validate_tables` to reject or quarantine.

The module holds every adapter (about 640 lines): each is a few mapping functions over one source's files,
read side by side with the others they share helpers with; one file per adapter would scatter those helpers.

``fightchurn`` (ChurnSim exports, e.g. the ``crm6`` B2B CRM simulation; files ``<schema>_account.csv``,
``<schema>_subscription.csv[.gz]``, ``<schema>_usage_daily.csv[.gz]``, ``sim_config/<schema>_conf.yaml``):

- subscriptions: base-plan rows only; the add-on rows (``sim_config/<schema>_addons.csv``) are written
  for every account and period by a simulator bug and are skipped (counted). ``mrr`` is taken as is: the
  source's MRR is already net of the discount (it equals round(list price x (1 - discount)); counted
  when the plan list is there) and already monthly for 6- and 12-month terms. ``seats`` = ``quantity``
  (the plan's user limit, i.e. licensed seats). The source's ``end_date`` is already exclusive (a churned
  account's usage stops the day before its last ``end_date``: 1 exception among 1,111 churned accounts
  of the two crm6 runs), so it is kept, except that: a gap of at
  most ``MAX_GAP_DAYS`` between a row and the account's next one (month-end calendar arithmetic in the
  simulator, with usage on the gap days) is closed so renewals abut; an overlap is cut at the next
  row's start; rows starting at or after the end of the simulation are skipped (counted); and an
  ``end_date`` at or after the end of the simulation becomes empty (open-ended: the simulation stopped
  before that renewal was decided, so it is neither a churn nor a renewal). One source row is one
  contract period (monthly plans renew monthly), so no row is merged or split.
  ``billing_period``: 1 month -> monthly, 6 -> semiannual, 12 -> annual (the contract's term lengths,
  ``BILLING_PERIOD_MONTHS``: a 6-month term read as annual would put its term end 6 months late); other
  values are carried as ``<n>_months`` and fail validation.
- accounts: ``segment`` from the list MRR of the account's first plan (its plan tier at signup, known
  from day one: no leakage from later upgrades): < 300 smb (starter, basic), < 900 mid_market
  (standard), else enterprise (advanced, premier). ``touch_model``: app-store signups (channel
  ``appstore*``) are tech touch; web signups follow the segment (enterprise high, mid_market low, smb
  tech). ``region`` = ``country`` (US state code); ``created_date`` = first subscription start (the
  customer-since date; ``date_of_birth`` is the company's founding date and has no counterpart).
  No name, industry or CSM in the source: empty.
- usage (from ``<schema>_usage_daily``), long form, days before the end of the simulation (later days
  are partial: events run on only to each live account's next anniversary; counted):
  ``feature_<event_type>`` = ``n_events`` (every CRM behaviour is a product feature, so the contract's
  ``feature_`` prefix makes adoption features work unchanged); ``active_users`` = the largest
  ``n_users`` over the day's event types (a lower bound of the day's distinct users: on the raw 5 %
  sample it is 0.96 of the truth at the median, correlation 0.98); ``<event_type>_value`` =
  ``value_sum`` where present (win/lose_opportunity). The raw-event sample is not used.

``ravenstack`` (RavenStack synthetic SaaS, files ``ravenstack_<table>.csv``):

- accounts: segment from ``plan_tier`` (Enterprise enterprise, Pro mid_market, Basic smb), touch model
  from the segment; ``region`` = ``country``; ``created_date`` = ``signup_date``.
- subscriptions: as is (``end_date`` read as exclusive), ``plan`` = tier lower-cased with ``_trial``
  for trials (their MRR is 0), ``billing_period`` = ``billing_frequency``.
- usage: feature-usage rows reach their account through their subscription; per account and day,
  ``feature_<n>`` = sum of ``usage_count``, ``usage_seconds`` = sum of ``usage_duration_secs``,
  ``errors`` = sum of ``error_count`` (several records of one feature on one day are summed).
- support_tickets: ``created_at`` = ``submitted_at``, ``resolved_at`` = ``closed_at``, priority
  ``medium`` -> ``normal``, ``csat`` = ``satisfaction_score``; no category.
- ``churn_events`` has no contract table (labels are derived from subscriptions): counted, not mapped.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from churnml.config import repo_root
from churnml.contract.io import write_folder
from churnml.contract.schemas import BILLING_PERIOD_MONTHS, TABLES
from churnml.errors import ChurnmlError

SHARED_DATA_ENV = "CHURNML_SHARED_DATA"
SHARED_DATA_DEFAULT = "../shared/data"  # relative to the repository root

# fightchurn
MAX_GAP_DAYS = 3  # a longer gap between two rows is kept: a late renewal, or a churn and a comeback
FIGHTCHURN_ADDONS = ("meetings", "search_unlimited")  # when sim_config/<schema>_addons.csv is missing
BILL_PERIODS = {months: name for name, months in BILLING_PERIOD_MONTHS.items()}  # 1, 6 and 12 months
SEGMENT_BANDS = ((300.0, "smb"), (900.0, "mid_market"), (float("inf"), "enterprise"))  # list MRR < bound
SEGMENT_TOUCH = {"enterprise": "high_touch", "mid_market": "low_touch", "smb": "tech_touch"}
SELF_SERVE_CHANNEL_PREFIX = "appstore"
EVENT_METRIC_PREFIX = "feature_"
ACTIVE_USERS_METRIC = "active_users"

# ravenstack
RAVENSTACK_SEGMENTS = {"Enterprise": "enterprise", "Pro": "mid_market", "Basic": "smb"}
RAVENSTACK_PRIORITIES = {"medium": "normal"}


def shared_data_dir() -> Path:
    """The third-party data folder: ``$CHURNML_SHARED_DATA``, else ``../shared/data`` from the repo root."""

    env = os.environ.get(SHARED_DATA_ENV)
    return Path(env) if env else repo_root() / SHARED_DATA_DEFAULT


def _text(values: pd.Series) -> pd.Series:
    return values.astype("str").where(values.notna())


def _unparsed(values: pd.Series, parsed: pd.Series) -> pd.Series:
    return values.notna() & parsed.isna()


def _coerce_dates(values: pd.Series) -> pd.Series:
    return pd.to_datetime(values, errors="coerce", format="ISO8601").astype("datetime64[us]")


def _dates(values: pd.Series, where: str) -> pd.Series:
    """Dates the mapping computes with (sorting, gaps): a cell that is not one stops the mapping."""
    parsed = _coerce_dates(values)
    bad = _unparsed(values, parsed)
    if bad.any():
        raise ChurnmlError(f"{where}: {int(bad.sum())} cell(s) are not dates, e.g. {values[bad].iloc[0]!r}")
    return parsed


def _number(values: pd.Series, where: str) -> pd.Series:
    """Numbers the mapping computes with (sums, bands): a cell that is not one stops the mapping."""
    parsed = pd.to_numeric(values, errors="coerce")
    bad = _unparsed(values, parsed)
    if bad.any():
        raise ChurnmlError(f"{where}: {int(bad.sum())} cell(s) are not numbers, e.g. {values[bad].iloc[0]!r}")
    return parsed


def _dates_or_text(values: pd.Series) -> pd.Series:
    """Dates carried one to one: with a bad cell the column stays text, so validation quarantines that row."""
    parsed = _coerce_dates(values)
    return _text(values) if _unparsed(values, parsed).any() else parsed


def _numbers_or_text(values: pd.Series, dtype: str) -> pd.Series:
    """Numbers carried one to one: with a bad cell the column stays text, so validation quarantines that row."""
    parsed = pd.to_numeric(values, errors="coerce")
    bad = _unparsed(values, parsed).any() or (dtype == "Int64" and (parsed.dropna() % 1 != 0).any())
    return _text(values) if bad else parsed.astype(dtype)


# --------------------------------------------------------------------------------------------- fightchurn


def fightchurn_subscriptions(
    subscriptions: pd.DataFrame,
    data_end: pd.Timestamp,
    addons: tuple[str, ...] = FIGHTCHURN_ADDONS,
    plans: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Map fightchurn subscription rows onto the contract's ``subscriptions`` (see the module docstring).

    Args:
        subscriptions: the source rows (account_id, product, start_date, end_date, mrr, quantity, units,
            bill_period_months, discount).
        data_end: the end of the simulation (exclusive): nothing on or after it was observed.
        addons: products that are add-ons, not base plans.
        plans: the simulator's plan list (plan, mrr) to check that ``mrr`` is net of the discount.

    Returns:
        The contract rows and counts of what was skipped or changed.
    """
    data_end = pd.Timestamp(data_end)
    frame = subscriptions.assign(
        account_id=_text(subscriptions["account_id"]),
        start=_dates(subscriptions["start_date"], "subscription.start_date"),
        end=_dates(subscriptions["end_date"], "subscription.end_date"),
    )
    is_addon = frame["product"].isin(addons)
    base = frame[~is_addon]
    late = base["start"] >= data_end
    base = base[~late].sort_values(["account_id", "start"], kind="stable")
    next_start = base.groupby("account_id", sort=False)["start"].shift(-1)
    gap = (next_start - base["end"]).dt.days
    closed = (gap > 0) & (gap <= MAX_GAP_DAYS)
    overlap = gap < 0
    end = base["end"].mask(closed | overlap, next_start)
    open_ended = end >= data_end
    months = _number(base["bill_period_months"], "subscription.bill_period_months")
    mrr = _number(base["mrr"], "subscription.mrr")
    out = pd.DataFrame(
        {
            "subscription_id": base["account_id"] + "-" + base["start"].dt.strftime("%Y%m%d"),
            "account_id": base["account_id"],
            "plan": _text(base["product"]),
            "billing_period": months.map(BILL_PERIODS).fillna(months.astype("str") + "_months"),
            "start_date": base["start"],
            "end_date": end.mask(open_ended),
            "mrr": mrr.astype("float64"),
            "seats": _numbers_or_text(base["quantity"], "Int64"),
        }
    ).reset_index(drop=True)
    notes = {
        "subscriptions_source_rows": len(subscriptions),
        "subscriptions_addon_rows_skipped": int(is_addon.sum()),
        "subscriptions_starting_at_or_after_data_end_skipped": int(late.sum()),
        "subscriptions_gaps_closed": int(closed.sum()),
        "subscriptions_overlaps_cut": int(overlap.sum()),
        "subscriptions_open_ended_at_data_end": int(open_ended.sum()),
        "subscriptions_unknown_bill_period": int((~months.isin(list(BILL_PERIODS))).sum()),
    }
    if plans is not None:
        listed = base["product"].map(plans.set_index("plan")["mrr"])
        net = (pd.to_numeric(listed) * (1 - _number(base["discount"], "subscription.discount"))).round()
        notes["subscriptions_mrr_not_list_price_net_of_discount"] = int(
            (listed.isna() | ((mrr - net).abs() > 1)).sum()
        )
    return out, notes


def _segment_from_mrr(list_mrr: pd.Series) -> pd.Series:
    segment = pd.Series(pd.NA, index=list_mrr.index, dtype="str")
    lower = -float("inf")
    for bound, name in SEGMENT_BANDS:
        segment = segment.mask((list_mrr >= lower) & (list_mrr < bound), name)
        lower = bound
    return segment


def fightchurn_accounts(
    accounts: pd.DataFrame, subscriptions: pd.DataFrame, addons: tuple[str, ...] = FIGHTCHURN_ADDONS
) -> pd.DataFrame:
    """Map fightchurn accounts onto the contract's ``accounts`` (segment and touch model derived).

    Args:
        accounts: the source rows (account_id, channel, date_of_birth, country).
        subscriptions: the source subscription rows (for the first plan and the customer-since date).
        addons: products that are add-ons, not base plans.

    Returns:
        The contract rows; an account without any base plan gets no segment and no created_date (the
        validation rejects it).
    """
    subs = subscriptions[~subscriptions["product"].isin(addons)]
    subs = subs.assign(
        account_id=_text(subs["account_id"]), start=_dates(subs["start_date"], "subscription.start_date")
    )
    first = subs.sort_values(["account_id", "start"], kind="stable").drop_duplicates("account_id")
    # a 100 % discount would divide by 0
    discount = _number(first["discount"], "subscription.discount").clip(upper=0.99)
    list_mrr = _number(first["mrr"], "subscription.mrr") / (1 - discount)
    first = first.assign(list_mrr=list_mrr).set_index("account_id")
    account_id = _text(accounts["account_id"])
    segment = _segment_from_mrr(account_id.map(first["list_mrr"]))
    channel = accounts["channel"].fillna("").astype("str")
    touch = segment.map(SEGMENT_TOUCH).mask(channel.str.startswith(SELF_SERVE_CHANNEL_PREFIX), "tech_touch")
    country = (
        accounts["country"].astype("str").where(accounts["country"].notna() & (accounts["country"] != ""))
    )
    return pd.DataFrame(
        {
            "account_id": account_id,
            "account_name": pd.Series(pd.NA, index=accounts.index, dtype="str"),
            "segment": segment,
            "touch_model": touch.where(segment.notna()),
            "industry": pd.Series(pd.NA, index=accounts.index, dtype="str"),
            "region": country,
            "csm_id": pd.Series(pd.NA, index=accounts.index, dtype="str"),
            "created_date": account_id.map(first["start"]).astype("datetime64[us]"),
        }
    ).reset_index(drop=True)


def fightchurn_usage(
    usage_daily: pd.DataFrame, data_end: pd.Timestamp
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Map fightchurn's daily usage per event type onto the contract's long-form ``usage``.

    Args:
        usage_daily: the source rows (account_id, event_date, event_type, n_events, n_users, value_sum).
        data_end: the end of the simulation (exclusive); later days are partial and skipped.

    Returns:
        The contract rows (``feature_<event_type>``, ``active_users``, ``<event_type>_value``) and counts.
    """
    date = _dates(usage_daily["event_date"], "usage_daily.event_date")
    keep = date < pd.Timestamp(data_end)
    daily = usage_daily[keep].assign(account_id=_text(usage_daily["account_id"][keep]), date=date[keep])
    events = pd.DataFrame(
        {
            "account_id": daily["account_id"],
            "date": daily["date"],
            "metric": EVENT_METRIC_PREFIX + daily["event_type"].astype("str"),
            "value": _number(daily["n_events"], "usage_daily.n_events").astype("float64"),
        }
    )
    users = (
        daily.assign(n_users=_number(daily["n_users"], "usage_daily.n_users"))
        .groupby(["account_id", "date"], sort=False)["n_users"]
        .max()
        .astype("float64")
        .rename("value")
        .reset_index()
        .assign(metric=ACTIVE_USERS_METRIC)
    )
    valued = daily[daily["value_sum"].notna()]
    values = pd.DataFrame(
        {
            "account_id": valued["account_id"],
            "date": valued["date"],
            "metric": valued["event_type"].astype("str") + "_value",
            "value": _number(valued["value_sum"], "usage_daily.value_sum").astype("float64"),
        }
    )
    out = pd.concat([events, users[["account_id", "date", "metric", "value"]], values], ignore_index=True)
    notes = {
        "usage_source_rows": len(usage_daily),
        "usage_source_rows_on_or_after_data_end_skipped": int((~keep).sum()),
        "usage_event_rows": len(events),
        "usage_active_users_rows": len(users),
        "usage_value_rows": len(values),
    }
    return out, notes


def _find(src: Path, pattern: str) -> Path:
    found = sorted(src.glob(pattern))
    if len(found) != 1:
        what = "no file" if not found else f"{len(found)} files ({', '.join(p.name for p in found)})"
        raise ChurnmlError(f"{src}: expected one file matching {pattern!r}, found {what}")
    return found[0]


def _read_csv(path: Path, **kwargs) -> pd.DataFrame:
    try:
        return pd.read_csv(path, **kwargs)
    except (OSError, ValueError) as exc:
        raise ChurnmlError(f"{path}: cannot read ({str(exc).splitlines()[0]})") from None


def _fightchurn_data_end(src: Path, schema: str) -> pd.Timestamp:
    import yaml

    path = src / "sim_config" / f"{schema}_conf.yaml"
    if not path.is_file():
        raise ChurnmlError(f"{path}: missing; it gives the end of the simulation (end_date)")
    end = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("end_date")
    if not end:
        raise ChurnmlError(f"{path}: no end_date")
    return pd.Timestamp(str(end))


def _fightchurn_addons(addons_file: Path, plans: pd.DataFrame | None) -> tuple[tuple[str, ...], dict]:
    """The add-on products, and a note when the add-ons file is the known ChurnSim defect.

    fightchurn 1.2.0 can write the plans table into ``sim_config/<schema>_addons.csv`` (its columns
    ``bill_period``/``users``, or plan names of the plans file): read as add-ons, every base-plan row would
    be skipped. Then the add-ons are the default ones (:data:`FIGHTCHURN_ADDONS`) less any listed plan.
    """
    if not addons_file.is_file():
        return FIGHTCHURN_ADDONS, {}
    table = _read_csv(addons_file)
    if "plan" not in table.columns:
        raise ChurnmlError(f"{addons_file}: no column 'plan'")
    listed = set(plans["plan"].astype(str)) if plans is not None and "plan" in plans.columns else set()
    named = set(table["plan"].astype(str))
    if {"bill_period", "users"} <= set(table.columns) or (listed and named & listed):
        addons = tuple(a for a in FIGHTCHURN_ADDONS if a not in listed)
        return addons, {
            "addons_file_defect": f"{addons_file.name} holds the plans table (a known ChurnSim export defect); "
            f"add-ons taken as {', '.join(addons)}"
        }
    return tuple(table["plan"].astype(str)), {}


def _ingest_fightchurn(src: Path) -> tuple[dict[str, pd.DataFrame], dict]:
    account_file = _find(src, "*_account.csv")
    schema = account_file.name.removesuffix("_account.csv")
    data_end = _fightchurn_data_end(src, schema)
    addons_file = src / "sim_config" / f"{schema}_addons.csv"
    plans_file = src / "sim_config" / f"{schema}_plans.csv"
    plans = _read_csv(plans_file) if plans_file.is_file() else None
    addons, addons_note = _fightchurn_addons(addons_file, plans)

    ids = {"account_id": "str"}
    accounts_raw = _read_csv(account_file, dtype=ids, keep_default_na=False, na_values=[""])
    # parsed while read (fast); a cell that is not a date leaves its column text, and the mapping names it
    subs_raw = _read_csv(
        _find(src, f"{schema}_subscription.csv*"), dtype=ids, parse_dates=["start_date", "end_date"]
    )
    usage_raw = _read_csv(_find(src, f"{schema}_usage_daily.csv*"), dtype=ids, parse_dates=["event_date"])

    subscriptions, sub_notes = fightchurn_subscriptions(subs_raw, data_end, addons, plans)
    _refuse_empty("fightchurn", {"subscriptions": subscriptions}, sub_notes, src)
    accounts = fightchurn_accounts(accounts_raw, subs_raw, addons)
    usage, usage_notes = fightchurn_usage(usage_raw, data_end)

    last = subscriptions.sort_values("start_date", kind="stable").drop_duplicates("account_id", keep="last")
    notes: dict = {
        "schema": schema,
        "data_end": data_end.date().isoformat(),
        **addons_note,
        **sub_notes,
        **usage_notes,
        "accounts_churned_before_data_end": int(last["end_date"].notna().sum()),
    }
    lifetime_file = src / f"{schema}_account_lifetime.csv"
    if lifetime_file.is_file():
        lifetime = _read_csv(lifetime_file, dtype=ids)
        churned = set(
            lifetime.loc[lifetime["churned"].astype("str").isin(["t", "True", "true"]), "account_id"]
        )
        ours = set(last.loc[last["end_date"].notna(), "account_id"])
        notes["accounts_churn_disagreeing_with_lifetime_file"] = len(churned ^ ours)
    notes["not_carried"] = [
        "account.date_of_birth (company founding date)",
        "account.channel (only through touch_model)",
        "subscription.discount (mrr is already net of it)",
        "subscription.units (always users on base plans)",
        "usage_daily.n_users per event type (only its daily maximum, as active_users)",
        f"{schema}_events_raw_sample5pct (the daily table aggregates every event)",
        f"{schema}_event_type (names are already in the daily table)",
    ]
    return {"accounts": accounts, "subscriptions": subscriptions, "usage": usage}, notes


# --------------------------------------------------------------------------------------------- ravenstack


def ravenstack_tables(raw: dict[str, pd.DataFrame]) -> tuple[dict[str, pd.DataFrame], dict]:
    """Map RavenStack's tables onto the contract (see the module docstring); faithful, not judged.

    Args:
        raw: the source tables by name: accounts, subscriptions, feature_usage, support_tickets and
            optionally churn_events.

    Returns:
        The contract tables (accounts, subscriptions, usage, support_tickets) and counts of what the
        contract's rules cannot see (usage outside its subscription's window) or what was not mapped.
    """
    acc = raw["accounts"]
    segment = acc["plan_tier"].map(RAVENSTACK_SEGMENTS)
    accounts = pd.DataFrame(
        {
            "account_id": _text(acc["account_id"]),
            "account_name": _text(acc["account_name"]),
            # an unknown tier is carried as is so that validation names it
            "segment": segment.fillna(acc["plan_tier"].astype("str")),
            "touch_model": segment.map(SEGMENT_TOUCH).fillna(acc["plan_tier"].astype("str")),
            "industry": _text(acc["industry"]),
            "region": _text(acc["country"]),
            "csm_id": pd.Series(pd.NA, index=acc.index, dtype="str"),
            "created_date": _dates_or_text(acc["signup_date"]),
        }
    )

    sub = raw["subscriptions"]
    trial = sub["is_trial"].astype("str").str.lower() == "true"
    subscriptions = pd.DataFrame(
        {
            "subscription_id": _text(sub["subscription_id"]),
            "account_id": _text(sub["account_id"]),
            "plan": sub["plan_tier"].astype("str").str.lower() + trial.map({True: "_trial", False: ""}),
            "billing_period": _text(sub["billing_frequency"]),
            "start_date": _dates_or_text(sub["start_date"]),
            "end_date": _dates_or_text(sub["end_date"]),
            "mrr": _numbers_or_text(sub["mrr_amount"], "float64"),
            "seats": _numbers_or_text(sub["seats"], "Int64"),
        }
    )

    use = raw["feature_usage"]
    counts = ["usage_count", "usage_duration_secs", "error_count"]
    use = use.assign(**{c: _number(use[c], f"feature_usage.{c}") for c in counts})
    owner = subscriptions.drop_duplicates("subscription_id").set_index("subscription_id")
    used = use.assign(
        account_id=_text(use["subscription_id"]).map(owner["account_id"]),
        date=_dates_or_text(use["usage_date"]),
    )
    day = _coerce_dates(used["date"])
    window_start = _coerce_dates(used["subscription_id"].map(owner["start_date"]))
    window_end = _coerce_dates(used["subscription_id"].map(owner["end_date"]))
    outside = (day < window_start) | (window_end.notna() & (day >= window_end))
    keys = ["account_id", "date"]
    # dropna=False: a usage row whose subscription is unknown keeps its empty account for validation
    per_feature = (
        used.assign(metric=_text(use["feature_name"]))
        .groupby([*keys, "metric"], dropna=False, sort=False)["usage_count"]
        .sum()
        .rename("value")
        .reset_index()
    )
    per_day = used.groupby(keys, dropna=False, sort=False)[["usage_duration_secs", "error_count"]].sum()
    totals = (
        per_day.rename(columns={"usage_duration_secs": "usage_seconds", "error_count": "errors"})
        .reset_index()
        .melt(id_vars=keys, var_name="metric", value_name="value")
    )
    usage = pd.concat([per_feature, totals], ignore_index=True).astype({"value": "float64"})

    tic = raw["support_tickets"]
    support_tickets = pd.DataFrame(
        {
            "ticket_id": _text(tic["ticket_id"]),
            "account_id": _text(tic["account_id"]),
            "created_at": _dates_or_text(tic["submitted_at"]),
            "resolved_at": _dates_or_text(tic["closed_at"]),
            "priority": tic["priority"].astype("str").replace(RAVENSTACK_PRIORITIES),
            "category": pd.Series(pd.NA, index=tic.index, dtype="str"),
            "csat": _numbers_or_text(tic["satisfaction_score"], "float64"),
        }
    )

    notes: dict = {
        "usage_source_rows": len(use),
        "usage_rows_outside_own_subscription_window": int(outside.sum()),
        "usage_rows_with_unknown_subscription": int(used["account_id"].isna().sum()),
        "usage_source_rows_summed_into_one_account_day_feature": int(
            used.duplicated(["account_id", "date", "feature_name"], keep=False).sum()
        ),
        "usage_source_duplicate_usage_ids": int(use["usage_id"].duplicated().sum())
        if "usage_id" in use
        else 0,
        "subscriptions_trial_rows": int(trial.sum()),
        "churn_events_not_mapped": len(raw.get("churn_events", [])),
        "not_carried": [
            "accounts.referral_source, plan_tier (only as segment), seats, is_trial, churn_flag",
            "subscriptions.arr_amount (= 12 x mrr), upgrade/downgrade/churn flags, auto_renew_flag",
            "feature_usage.usage_id, is_beta_feature",
            "support_tickets.resolution_time_hours (= closed - submitted), first_response_time_minutes, "
            "escalation_flag",
            "churn_events (labels are derived from subscriptions)",
        ],
    }
    return {
        "accounts": accounts,
        "subscriptions": subscriptions,
        "usage": usage,
        "support_tickets": support_tickets,
    }, notes


def _ingest_ravenstack(src: Path) -> tuple[dict[str, pd.DataFrame], dict]:
    names = ("accounts", "subscriptions", "feature_usage", "support_tickets", "churn_events")
    raw = {}
    for name in names:
        path = src / f"ravenstack_{name}.csv"
        if not path.is_file():
            if name == "churn_events":
                continue
            raise ChurnmlError(
                f"{path}: missing (ravenstack needs ravenstack_<table>.csv for {', '.join(names[:4])})"
            )
        raw[name] = _read_csv(path, dtype="str", keep_default_na=False, na_values=[""])
    return ravenstack_tables(raw)


# ------------------------------------------------------------------------------------------------ registry

FAR_FUTURE = pd.Timestamp("2200-01-01")  # stands in for an open end (inside every datetime unit's range)


def _days_without_contract(days: pd.DataFrame, subscriptions: pd.DataFrame) -> pd.Series:
    """Whether each (account_id, date) row falls on a day with no active subscription of its account."""
    subs = subscriptions.dropna(subset=["account_id", "start_date"]).sort_values(
        ["account_id", "start_date"], kind="stable"
    )
    end = subs["end_date"].fillna(FAR_FUTURE)
    # merge overlapping subscriptions into blocks of continuous coverage, then look each day up once
    reach = end.groupby(subs["account_id"]).cummax()
    previous_reach = reach.groupby(subs["account_id"]).shift()
    new_block = previous_reach.isna() | (subs["start_date"] > previous_reach)
    blocks = (
        subs.assign(block=new_block.cumsum(), end=end)
        .groupby(["account_id", "block"])
        .agg(start=("start_date", "min"), end=("end", "max"))
        .reset_index()
        .astype({"start": "datetime64[us]", "end": "datetime64[us]"})
        .sort_values("start", kind="stable")
    )
    looked_up = pd.merge_asof(
        days.reset_index().astype({"date": "datetime64[us]"}).sort_values("date", kind="stable"),
        blocks[["account_id", "start", "end"]],
        left_on="date",
        right_on="start",
        by="account_id",
    ).set_index("index")
    return ~(looked_up["date"] < looked_up["end"]).reindex(days.index, fill_value=False)


def _coverage_notes(tables: dict[str, pd.DataFrame]) -> dict[str, int]:
    """Cross-table facts the contract's rules do not check (reported, never acted on)."""
    accounts = tables["accounts"].drop_duplicates("account_id").set_index("account_id")
    created = _coerce_dates(accounts["created_date"])
    usage = tables["usage"]
    days = (
        pd.DataFrame({"account_id": usage["account_id"], "date": _coerce_dates(usage["date"])})
        .dropna()
        .drop_duplicates()
        .reset_index(drop=True)
    )
    subs = tables["subscriptions"]
    subs = subs.assign(start_date=_coerce_dates(subs["start_date"]), end_date=_coerce_dates(subs["end_date"]))
    notes = {
        "usage_account_days": len(days),
        "usage_account_days_without_active_subscription": int(_days_without_contract(days, subs).sum()),
        "usage_account_days_before_account_created": int(
            (days["date"] < days["account_id"].map(created)).sum()
        ),
    }
    if "support_tickets" in tables:
        tickets = tables["support_tickets"]
        opened = _coerce_dates(tickets["created_at"])
        notes["support_tickets_before_account_created"] = int(
            (opened < tickets["account_id"].map(created)).sum()
        )
    return notes


ADAPTERS: dict[str, Callable[[Path], tuple[dict[str, pd.DataFrame], dict]]] = {
    "fightchurn": _ingest_fightchurn,
    "ravenstack": _ingest_ravenstack,
}


def _check_out(out: Path, written: set[str]) -> None:
    """Refuse an output folder holding contract tables this run would not replace (they would mix in)."""
    if not out.exists():
        return
    if not out.is_dir():
        raise ChurnmlError(f"{out}: exists and is not a folder")
    stale = [
        f"{name}.{ext}"
        for name in TABLES
        for ext in ("parquet", "csv")
        if (out / f"{name}.{ext}").exists() and not (name in written and ext == "parquet")
    ]
    if stale:
        raise ChurnmlError(f"{out}: already holds {', '.join(stale)} from elsewhere; use an empty folder")


def _refuse_empty(source: str, tables: dict[str, pd.DataFrame], notes: dict, src: Path) -> None:
    """One line naming the cause when a table every stage needs (accounts, subscriptions) maps to no row."""
    empty = [name for name in ("accounts", "subscriptions") if name in tables and tables[name].empty]
    if empty:
        skipped = {k: v for k, v in notes.items() if isinstance(v, int) and v and "skipped" in k}
        cause = f" ({', '.join(f'{k}: {v:,}' for k, v in skipped.items())})" if skipped else ""
        raise ChurnmlError(
            f"ingest {source}: the mapping leaves table(s) {', '.join(empty)} empty{cause}; "
            f"check the source files in {src}"
        )


def ingest(source: str, src: Path, out: Path) -> dict:
    """Map a third-party layout onto the contract and write ``out/<table>.parquet``.

    The tables are written as mapped, not validated: run :func:`churnml.contract.validate.validate_tables` (or
    ``churnml validate``) on the folder to reject or quarantine the rows that break the contract.

    Args:
        source: the layout, a key of :data:`ADAPTERS` (``fightchurn``, ``ravenstack``).
        src: the folder holding the source files.
        out: the folder to write the contract tables to (created; must not hold other contract tables).

    Returns:
        A report: ``source``, ``src``, ``out``, ``rows`` (per table written) and ``notes`` (counts of
        rows skipped, changed or not checkable by the contract, and the columns not carried).

    Raises:
        ChurnmlError: unknown source, missing or unreadable source files, or a cluttered output folder.
    """

    if source not in ADAPTERS:
        raise ChurnmlError(f"unknown source {source!r}; known: {', '.join(sorted(ADAPTERS))}")
    src, out = Path(src), Path(out)
    if not src.is_dir():
        raise ChurnmlError(f"{src}: no such folder")
    tables, notes = ADAPTERS[source](src)
    _refuse_empty(source, tables, notes, src)
    notes = {**notes, **_coverage_notes(tables)}
    _check_out(out, set(tables))
    write_folder(tables, out)
    return {
        "source": source,
        "src": str(src),
        "out": str(out),
        "rows": {name: len(frame) for name, frame in tables.items()},
        "notes": notes,
    }
