"""Making names from a CSV or from run tags safe to write out.

Method, dataset and task names come from user files, so the leaderboard treats them as
hostile when it writes them:

- A spreadsheet opening ``metrics.csv`` runs a cell that starts with ``=``, ``+``, ``-``,
  ``@``, a tab or a carriage return as a formula (``=HYPERLINK(...)``, ``+cmd|...``). Such text
  cells get a leading apostrophe, the usual way to tell a spreadsheet "this is text"; numbers
  (``-12.5``, ``+1.20 ± 0.30``) are left as they are, they cannot carry a formula.
- A name used in an MLflow metric key or a file name must stay one path segment: MLflow
  refuses keys that normalise to another path (``../x``), and a folder named ``..`` would put
  the output outside ``leaderboard/``.
"""

from __future__ import annotations

import re

import pandas as pd

#: First characters that make a spreadsheet evaluate a cell (OWASP "CSV injection").
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = r"[+-]?(\d[\d,]*(\.\d*)?|\.\d+)(e[+-]?\d+)?%?"
_NUMERIC = re.compile(rf"{_NUMBER}( ± {_NUMBER})?", re.IGNORECASE)
#: The longest name kept in a metric key or a file name (MLflow keys may have 250 characters).
MAX_NAME = 120


def text(value: object) -> object:
    """``value`` with a leading apostrophe when it is text a spreadsheet would evaluate."""
    if not isinstance(value, str) or len(value) < 2 or not value.startswith(FORMULA_START):
        return value
    return value if _NUMERIC.fullmatch(value) else "'" + value


def frame(table: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``table`` with every text cell, index label and column name made safe."""
    out = table.copy()
    for column in out.columns:
        if not pd.api.types.is_numeric_dtype(out[column]):
            out[column] = out[column].map(text)
    out.index = out.index.map(text)
    out.columns = out.columns.map(text)
    return out


def segment(name: str, keep: str = "-_. ") -> str:
    """``name`` as one safe path segment: characters other than letters, digits and ``keep``
    replaced by ``_``, never ``.``, ``..`` or empty, at most ``MAX_NAME`` characters."""
    out = "".join(c if c.isalnum() or c in keep else "_" for c in name)[:MAX_NAME].strip()
    if not out.strip("."):
        out = "_" * max(len(out), 1)
    return out
