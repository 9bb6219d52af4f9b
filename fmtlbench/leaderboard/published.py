"""Leaderboards from a CSV of metrics, so that published tables can be re-analysed.

The CSV is "long": one value per line, with the columns

    method, setting, dataset, task, metric, value        (required)
    client, seed, lower_is_better                         (optional)
    algorithm, share, arch, backbone, scenario, data, clients   (optional tags)

``setting`` is G or P. Lines without a ``client`` hold a client mean; lines with one hold that
client's value (their mean is used when no mean line is given). ``lower_is_better`` may be
left out for the metrics fmtlbench knows (miou, rmse, mean, median, loss, maxf, within_*...).
Such records have no per-round history, so curves and time-to-target are not available.
"""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from pathlib import Path

from fmtlbench.errors import DataError
from fmtlbench.leaderboard.records import Record
from fmtlbench.metric_keys import SETTINGS, TaskMetric, client_label

REQUIRED = ("method", "setting", "dataset", "task", "metric", "value")
TAG_COLUMNS = ("algorithm", "share", "arch", "backbone", "scenario", "data", "clients")
#: Direction of the metrics fmtlbench reports (True = lower is better).
METRIC_DIRECTIONS = {
    "miou": False,
    "pixel_acc": False,
    "maxf": False,
    "iou": False,
    "rmse": True,
    "abs_rel": True,
    "mean": True,
    "median": True,
    "loss": True,
}
TRUE, FALSE = {"1", "true", "yes", "y"}, {"0", "false", "no", "n"}


def _direction(row: dict[str, str], where: str) -> bool:
    given = (row.get("lower_is_better") or "").strip().lower()
    if given in TRUE | FALSE:
        return given in TRUE
    if given:
        raise DataError(f"{where}: lower_is_better must be true or false, got {given!r}")
    metric = row["metric"]
    if metric.startswith("within_"):
        return False
    if metric in METRIC_DIRECTIONS:
        return METRIC_DIRECTIONS[metric]
    raise DataError(
        f"{where}: unknown direction of metric {metric!r}; add a lower_is_better column "
        "(true when lower values are better)"
    )


def _value(text: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise DataError(f"{where}: value {text!r} is not a number") from None
    if not math.isfinite(value):
        raise DataError(f"{where}: value {text!r} is not finite")
    return value


def read_csv(path: Path) -> list[Record]:
    """One ``Record`` per (method, seed) of the CSV at ``path``."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"--from-csv {path}: no such file")
    try:
        return _read(path)
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path}: not UTF-8 text (byte {exc.start}); save the CSV as UTF-8"
        ) from None
    except csv.Error as exc:  # a field over the csv module's limit, NUL bytes, bad quoting
        raise DataError(
            f"{path}: not a readable CSV ({exc}); expected {', '.join(REQUIRED)}"
        ) from None


def _read(path: Path) -> list[Record]:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        columns = [c.strip() for c in reader.fieldnames or []]
        missing = [c for c in REQUIRED if c not in columns]
        if missing:
            raise DataError(
                f"{path}: missing column(s) {', '.join(missing)}; a leaderboard CSV needs "
                f"{', '.join(REQUIRED)} (optional: client, seed, lower_is_better)"
            )
        rows = [{k.strip(): (v or "").strip() for k, v in row.items() if k} for row in reader]
    records: dict[tuple[str, str, str], Record] = {}
    per_client: dict[tuple[str, str, str], dict[TaskMetric, list[float]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for line, row in enumerate(rows, start=2):
        where = f"{path}, line {line}"
        empty = [c for c in REQUIRED if not row.get(c)]
        if empty:
            raise DataError(f"{where}: empty {', '.join(empty)}")
        if row["setting"] not in SETTINGS:
            raise DataError(f"{where}: setting must be G or P, got {row['setting']!r}")
        key = TaskMetric(row["setting"], row["dataset"], row["task"], row["metric"])
        # one table may hold several scenarios (their references are looked up across it)
        scenario = row.get("scenario") or ""
        ident = (row["method"], row.get("seed") or "-", scenario)
        record = records.setdefault(
            ident,
            Record(
                method=ident[0],
                seed=ident[1],
                source=f"{path.name}:{ident[0]}:{ident[1]}" + (f":{scenario}" if scenario else ""),
                tags={t: row[t] for t in TAG_COLUMNS if row.get(t)},
                start_time=line,
            ),
        )
        lower = _direction(row, where)
        if record.lower.setdefault(key, lower) != lower:
            raise DataError(f"{where}: {key} has conflicting lower_is_better values")
        value = _value(row["value"], where)
        if row.get("client"):
            record.clients[(client_label(int(row["client"])), key)] = value
            per_client[ident][key].append(value)
        elif key in record.final:
            raise DataError(f"{where}: a second mean value of {key} for {ident[0]}")
        else:
            record.final[key] = value
    for ident, table in per_client.items():
        for key, values in table.items():
            records[ident].final.setdefault(key, sum(values) / len(values))
    if not records:
        raise DataError(f"{path}: no data lines")
    return list(records.values())
