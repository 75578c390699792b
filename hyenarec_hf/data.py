"""Reading interaction logs, the item vocabulary, and leave-one-out splits.

The pipeline is three plain steps, each usable on its own:

1. a reader (`read_pairs`, `read_seq`, `read_grouplens`, `read_recbole_inter`, `read_table`, `from_dataframe`, or
   `load_interactions` to pick one) turns a file into `Interactions`: one chronological list of raw item ids (`str`)
   per user, plus a `report` of what was read and what every filter removed;
2. `ItemVocab` maps raw item ids to indices `1..N` (`0` is padding);
3. `build_splits` turns `Interactions` into a `datasets.DatasetDict` with the leave-one-out `train` / `validation` /
   `test` splits, and `window_sequences` cuts long training histories into overlapping windows.

Nothing is dropped silently: every reader counts malformed lines and filtered users, items and interactions in
`Interactions.report`, and `build_splits` counts the users that cannot be evaluated.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import logging
import os
import re
import shutil
import urllib.error
import urllib.request
import zipfile
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import chain
from operator import itemgetter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.compute as pc
from datasets import Dataset, DatasetDict, Features, List, Value
from tqdm.auto import tqdm

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike

FORMATS = ("auto", "pair", "seq", "grouplens", "recbole", "csv", "parquet")
GROUPLENS_CSV_HEADER = "userId,movieId,rating,timestamp"
# Files larger than this (on disk, so compressed size for .gz) get a progress bar while they are read.
_PROGRESS_BAR_MIN_BYTES = 64 * 2**20
_DOWNLOAD_TIMEOUT_S = 10.0
_INT_RE = re.compile(r"[+-]?[0-9]+\Z")
_RECBOLE_HEADER = "user_id:token\titem_id:token\trating:float\ttimestamp:float"


# ---------------------------------------------------------------------------------------------------------------
# Interactions
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class Interactions:
    """Per-user chronological item sequences read from one source.

    Args:
        users: raw user ids, in order of first appearance in the source.
        sequences: `sequences[k]` is the chronological list of raw item ids of `users[k]` (oldest first).
        report: what the reader did, e.g. `lines_read`, `malformed_lines_skipped`,
            `interactions_below_rating_threshold`, `users_removed_by_kcore`, `items_removed_by_kcore`,
            `interactions_removed_by_max_history_length`, and the final `users` / `items` / `interactions`.
            `build_splits` adds a `splits` entry.
    """

    users: list[str]
    sequences: list[list[str]]
    report: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.users) != len(self.sequences):
            raise ValueError(
                f"Interactions needs one sequence per user, got {len(self.users)} users and {len(self.sequences)} "
                "sequences; pass lists of the same length"
            )

    def num_users(self) -> int:
        """Number of users."""
        return len(self.users)

    def num_items(self) -> int:
        """Number of distinct items."""
        return len(set(chain.from_iterable(self.sequences)))

    def num_interactions(self) -> int:
        """Total number of (user, item) events, repeats included."""
        return sum(len(seq) for seq in self.sequences)


# ---------------------------------------------------------------------------------------------------------------
# Shared reading machinery
# ---------------------------------------------------------------------------------------------------------------


def _is_int(token: str) -> bool:
    return (token.isdigit() and token.isascii()) or _INT_RE.match(token) is not None


def _base_suffix(path: Path) -> str:
    """The suffix ignoring a trailing `.gz`: `ml-1m.txt.gz` -> `.txt`."""
    name = path.name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    return Path(name).suffix


def _check_path(path: PathLike) -> Path:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} does not exist or is not a file; check the path (the offline copies of the public datasets "
            "are in ../shared/data/ relative to the project root)"
        )
    return path


def _lines(path: Path) -> Iterator[str]:
    """Yield the lines of a text file (gzip-compressed when it ends in `.gz`), with a progress bar for big files."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    big = path.stat().st_size >= _PROGRESS_BAR_MIN_BYTES
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            yield from tqdm(f, desc=f"Reading {path.name}", unit=" lines", unit_scale=True, disable=not big)
    except UnicodeDecodeError as err:
        raise ValueError(f"{path} is not UTF-8 text ({err}); re-encode it as UTF-8") from err
    except gzip.BadGzipFile as err:
        raise ValueError(f"{path} ends in .gz but is not a gzip file ({err}); decompress or rename it") from err


def _new_report(source: Path | str, fmt: str) -> dict[str, Any]:
    return {"source": str(source), "format": fmt, "lines_read": 0, "malformed_lines_skipped": 0}


class _MalformedLines:
    """Raises on the first malformed line, or counts it when `skip_malformed=True`."""

    def __init__(self, path: Path | str, skip: bool, report: dict[str, Any], expected: str, unit: str = "line"):
        self.path, self.skip, self.report, self.expected, self.unit = path, skip, report, expected, unit
        self.first: list[int] = []

    def __call__(self, lineno: int, line: str, why: str) -> None:
        got = line.rstrip("\r\n")
        if len(got) > 80:
            got = got[:77] + "..."
        if not self.skip:
            raise ValueError(
                f"{self.path} {self.unit} {lineno}: expected {self.expected}, got {got!r} ({why}); "
                "fix the line or pass skip_malformed=True"
            )
        self.report["malformed_lines_skipped"] += 1
        if len(self.first) < 5:
            self.first.append(lineno)

    def log(self) -> None:
        count = self.report["malformed_lines_skipped"]
        if count:
            self.report["first_malformed_lines"] = list(self.first)
            logger.warning(
                "skipped %d malformed %ss in %s (first at %s %s); expected %s",
                count,
                self.unit,
                self.path,
                self.unit,
                ", ".join(map(str, self.first)),
                self.expected,
            )


def _check_options(
    min_user_interactions: int, min_item_interactions: int, max_history_length: int | None, rating_threshold: Any
) -> None:
    for name, value in (
        ("min_user_interactions", min_user_interactions),
        ("min_item_interactions", min_item_interactions),
    ):
        if not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
    if max_history_length is not None and (not isinstance(max_history_length, int) or max_history_length < 1):
        raise ValueError(f"max_history_length must be None or an integer >= 1, got {max_history_length!r}")
    if rating_threshold is not None and not isinstance(rating_threshold, int | float):
        raise ValueError(f"rating_threshold must be a number or None, got {rating_threshold!r}")


def _no_ratings(rating_threshold: float | None, source: Path | str, fmt: str) -> None:
    if rating_threshold is not None:
        raise ValueError(
            f"rating_threshold={rating_threshold} was given but {source} ({fmt} format) has no ratings; drop "
            "rating_threshold, or read a file with ratings (GroupLens ratings.dat/ratings.csv, a RecBole .inter "
            "with a rating column, or a table with rating_col=...)"
        )


def _sort_by_time(groups: dict[str, list[tuple[Any, str]]]) -> dict[str, list[str]]:
    """Turn `user -> [(time, item), ...]` into `user -> [item, ...]` sorted by time; ties keep file order."""
    by_time = itemgetter(0)
    out = {}
    for user, events in groups.items():
        events.sort(key=by_time)  # list.sort is stable
        out[user] = [item for _, item in events]
    return out


def _finalize(
    groups: dict[str, list[str]],
    report: dict[str, Any],
    *,
    min_user_interactions: int,
    min_item_interactions: int,
    max_history_length: int | None,
) -> Interactions:
    """Apply the filters shared by all readers and build `Interactions`.

    Order: users left without interactions by the rating threshold are removed, then the iterative k-core, then
    `max_history_length` (so the k-core counts are taken on the full histories).
    """
    source = report["source"]
    report["interactions_read"] = report.get("interactions_read", sum(len(s) for s in groups.values()))
    if not groups:
        if report["malformed_lines_skipped"]:
            raise ValueError(
                f"no valid interactions in {source}: all {report['malformed_lines_skipped']} lines were malformed; "
                "check the format (pass format=... to load_interactions) or fix the file"
            )
        raise ValueError(f"{source} has no interactions (empty file or header only); pass a file with interactions")

    empty = [u for u, s in groups.items() if not s]
    if "interactions_below_rating_threshold" in report:
        report["users_removed_by_rating_threshold"] = len(empty)
    for user in empty:
        del groups[user]

    _k_core(groups, min_user_interactions, min_item_interactions, report)

    removed = truncated_users = 0
    if max_history_length is not None:
        for user, seq in groups.items():
            if len(seq) > max_history_length:
                removed += len(seq) - max_history_length
                truncated_users += 1
                groups[user] = seq[-max_history_length:]
    report["users_truncated_by_max_history_length"] = truncated_users
    report["interactions_removed_by_max_history_length"] = removed

    if not groups:
        raise ValueError(
            f"no interactions left in {source} after the filters (rating_threshold, min_user_interactions="
            f"{min_user_interactions}, min_item_interactions={min_item_interactions}); loosen them. "
            f"Report: {report}"
        )
    interactions = Interactions(users=list(groups), sequences=list(groups.values()), report=report)
    report["users"] = interactions.num_users()
    report["items"] = interactions.num_items()
    report["interactions"] = interactions.num_interactions()
    logger.info(
        "read %s: %d users, %d items, %d interactions",
        source,
        report["users"],
        report["items"],
        report["interactions"],
    )
    return interactions


def _k_core(groups: dict[str, list[str]], min_user: int, min_item: int, report: dict[str, Any]) -> None:
    """Iterative k-core, in place: drop items with fewer than `min_item` interactions and users with fewer than
    `min_user`, again and again until nothing changes (removing a user can push an item below its threshold)."""
    users_before = len(groups)
    items_before = len(set(chain.from_iterable(groups.values()))) if min_item > 1 or min_user > 1 else 0
    events_before = sum(len(s) for s in groups.values())
    rounds = 0
    while True:
        changed = False
        if min_item > 1:
            counts = Counter(chain.from_iterable(groups.values()))
            rare = {item for item, count in counts.items() if count < min_item}
            if rare:
                changed = True
                for user, seq in groups.items():
                    groups[user] = [item for item in seq if item not in rare]
        short = [user for user, seq in groups.items() if len(seq) < max(min_user, 1)]
        if short:
            changed = True
            for user in short:
                del groups[user]
        if not changed:
            break
        rounds += 1
    report["kcore_rounds"] = rounds
    report["users_removed_by_kcore"] = users_before - len(groups)
    if min_item > 1 or min_user > 1:
        report["items_removed_by_kcore"] = items_before - len(set(chain.from_iterable(groups.values())))
    else:
        report["items_removed_by_kcore"] = 0
    report["interactions_removed_by_kcore"] = events_before - sum(len(s) for s in groups.values())
    if report["users_removed_by_kcore"] or report["interactions_removed_by_kcore"]:
        logger.info(
            "k-core (min_user_interactions=%d, min_item_interactions=%d) stabilised after %d rounds: removed "
            "%d users, %d items, %d interactions",
            min_user,
            min_item,
            rounds,
            report["users_removed_by_kcore"],
            report["items_removed_by_kcore"],
            report["interactions_removed_by_kcore"],
        )


# ---------------------------------------------------------------------------------------------------------------
# Readers
# ---------------------------------------------------------------------------------------------------------------


def read_pairs(
    path: PathLike,
    *,
    skip_malformed: bool = False,
    rating_threshold: float | None = None,
    min_user_interactions: int = 0,
    min_item_interactions: int = 0,
    max_history_length: int | None = None,
) -> Interactions:
    """Read the SASRec / BERT4Rec pair format: one `user item` per line, integer ids, chronological.

    Lines are grouped by user in file order, so each user's lines need not be contiguous. Blank lines are ignored.
    The format has no ratings, so `rating_threshold` must be None. The filter options are described in
    `load_interactions`.

    Raises:
        ValueError: on the first malformed line (not exactly two integer tokens), naming the file and line, unless
            `skip_malformed=True`; on an empty file.
    """
    path = _check_path(path)
    _check_options(min_user_interactions, min_item_interactions, max_history_length, rating_threshold)
    _no_ratings(rating_threshold, path, "pair")
    report = _new_report(path, "pair")
    bad = _MalformedLines(path, skip_malformed, report, "'user item' (two integer ids)")
    groups: dict[str, list[str]] = {}
    interned: dict[str, str] = {}
    lineno = 0
    for lineno, line in enumerate(_lines(path), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2:
            bad(lineno, line, f"{len(parts)} tokens")
            continue
        user, item = parts
        if not (_is_int(user) and _is_int(item)):
            bad(lineno, line, "ids must be integers")
            continue
        seq = groups.get(user)
        if seq is None:
            groups[user] = seq = []
        seq.append(interned.setdefault(item, item))
    report["lines_read"] = lineno
    bad.log()
    return _finalize(
        groups,
        report,
        min_user_interactions=min_user_interactions,
        min_item_interactions=min_item_interactions,
        max_history_length=max_history_length,
    )


def read_seq(
    path: PathLike,
    *,
    skip_malformed: bool = False,
    rating_threshold: float | None = None,
    min_user_interactions: int = 0,
    min_item_interactions: int = 0,
    max_history_length: int | None = None,
) -> Interactions:
    """Read the S3Rec sequence format: one user per line, `user item_1 item_2 ... item_n`, integer ids, chronological.

    A user on several lines gets the items of all its lines, in file order. Blank lines are ignored; a line with a
    user and no items is malformed. No ratings, so `rating_threshold` must be None. Filters: see `load_interactions`.

    Raises:
        ValueError: on the first malformed line, naming the file and line, unless `skip_malformed=True`; on an empty
            file.
    """
    path = _check_path(path)
    _check_options(min_user_interactions, min_item_interactions, max_history_length, rating_threshold)
    _no_ratings(rating_threshold, path, "seq")
    report = _new_report(path, "seq")
    bad = _MalformedLines(path, skip_malformed, report, "'user item_1 item_2 ...' (integer ids, at least one item)")
    groups: dict[str, list[str]] = {}
    interned: dict[str, str] = {}
    lineno = 0
    for lineno, line in enumerate(_lines(path), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) < 2:
            bad(lineno, line, "a user without items")
            continue
        if not all(map(_is_int, parts)):
            bad(lineno, line, "ids must be integers")
            continue
        user = parts[0]
        items = [interned.setdefault(item, item) for item in parts[1:]]
        if user in groups:
            groups[user].extend(items)
        else:
            groups[user] = items
    report["lines_read"] = lineno
    bad.log()
    return _finalize(
        groups,
        report,
        min_user_interactions=min_user_interactions,
        min_item_interactions=min_item_interactions,
        max_history_length=max_history_length,
    )


def read_grouplens(
    path: PathLike,
    *,
    skip_malformed: bool = False,
    rating_threshold: float | None = None,
    min_user_interactions: int = 0,
    min_item_interactions: int = 0,
    max_history_length: int | None = None,
) -> Interactions:
    """Read MovieLens ratings from GroupLens, chosen by suffix (a trailing `.gz` is allowed):

    - `ratings.dat` (ML-1M, ML-10M): `UserID::MovieID::Rating::Timestamp`, no header;
    - `ratings.csv` (ml-latest, ML-20M/25M/32M): header `userId,movieId,rating,timestamp`;
    - `u.data` (ML-100K): `user item rating timestamp`, tab separated, no header.

    Each user's items are sorted by timestamp; equal timestamps keep file order. User and movie ids must be
    integers, the rating a number and the timestamp an integer; anything else is a malformed line.
    `rating_threshold` keeps ratings >= threshold. Filters: see `load_interactions`.
    """
    path = _check_path(path)
    _check_options(min_user_interactions, min_item_interactions, max_history_length, rating_threshold)
    suffix = _base_suffix(path)
    if suffix == ".dat":
        sep, header, expected = "::", None, "'UserID::MovieID::Rating::Timestamp'"
    elif suffix == ".csv":
        sep, header, expected = ",", GROUPLENS_CSV_HEADER, f"'{GROUPLENS_CSV_HEADER}' values"
    elif suffix == ".data":
        sep, header, expected = "\t", None, "'user<TAB>item<TAB>rating<TAB>timestamp'"
    else:
        raise ValueError(
            f"{path}: read_grouplens picks the layout by suffix and knows .dat (ratings.dat), .csv (ratings.csv) and "
            f".data (u.data), got {suffix!r}; rename the file or use another reader (load_interactions(format=...))"
        )
    report = _new_report(path, "grouplens")
    if rating_threshold is not None:
        report["interactions_below_rating_threshold"] = 0
    bad = _MalformedLines(path, skip_malformed, report, expected + " (integer ids and timestamp, numeric rating)")
    groups: dict[str, list[tuple[int, str]]] = {}
    interned: dict[str, str] = {}
    below = 0
    lineno = 0
    lines = enumerate(_lines(path), 1)
    if header is not None:
        for lineno, line in lines:
            if line.strip():
                if line.strip().replace(" ", "") != header:
                    raise ValueError(
                        f"{path} line {lineno}: expected the GroupLens header '{header}', got {line.strip()[:80]!r}; "
                        "for other CSV files use read_table(path, user_col=..., item_col=...) or format='csv'"
                    )
                break
    for lineno, line in lines:
        parts = line.rstrip("\r\n").split(sep)
        if len(parts) != 4:
            if line.strip():
                bad(lineno, line, f"{len(parts)} fields")
            continue
        user, item, rating, timestamp = (p.strip() for p in parts)
        if not (_is_int(user) and _is_int(item)):
            bad(lineno, line, "ids must be integers")
            continue
        if not _is_int(timestamp):
            bad(lineno, line, "timestamp must be an integer")
            continue
        try:
            value = float(rating)
        except ValueError:
            bad(lineno, line, "rating must be a number")
            continue
        if rating_threshold is not None and value < rating_threshold:
            below += 1
            groups.setdefault(user, [])
            continue
        seq = groups.get(user)
        if seq is None:
            groups[user] = seq = []
        seq.append((int(timestamp), interned.setdefault(item, item)))
    report["lines_read"] = lineno
    if rating_threshold is not None:
        report["interactions_below_rating_threshold"] = below
    bad.log()
    report["interactions_read"] = sum(len(s) for s in groups.values()) + below
    return _finalize(
        _sort_by_time(groups),
        report,
        min_user_interactions=min_user_interactions,
        min_item_interactions=min_item_interactions,
        max_history_length=max_history_length,
    )


def _find_column(header: list[str], name: str) -> int | None:
    """Index of `name` in a RecBole header, matching the whole field (`user_id:token`) or its name (`user_id`)."""
    for k, column in enumerate(header):
        if column == name or column.split(":", 1)[0] == name:
            return k
    return None


def read_recbole_inter(
    path: PathLike,
    *,
    user_col: str = "user_id",
    item_col: str = "item_id",
    rating_col: str | None = "rating",
    time_col: str | None = "timestamp",
    skip_malformed: bool = False,
    rating_threshold: float | None = None,
    min_user_interactions: int = 0,
    min_item_interactions: int = 0,
    max_history_length: int | None = None,
) -> Interactions:
    """Read a RecBole atomic `.inter` file: tab separated, header like
    `user_id:token item_id:token rating:float timestamp:float`.

    Columns are found by the name before `:` (or the whole header field). The default `rating` / `timestamp`
    columns are optional: without a timestamp column (or with `time_col=None`) file order is kept; a non-default
    name that is absent is an error. Ids are kept as strings (RecBole tokens need not be integers). Each user's items
    are sorted by timestamp, ties in file order. A line with the wrong number of fields, an empty id, or a
    non-numeric rating/timestamp is malformed. Filters: see `load_interactions`.
    """
    path = _check_path(path)
    _check_options(min_user_interactions, min_item_interactions, max_history_length, rating_threshold)
    report = _new_report(path, "recbole")
    lines = enumerate(_lines(path), 1)
    header: list[str] | None = None
    header_lineno = 0
    for lineno, line in lines:
        if line.strip():
            header, header_lineno = line.rstrip("\r\n").split("\t"), lineno
            break
    if header is None:
        raise ValueError(f"{path} is empty; a RecBole .inter file starts with a header such as {_RECBOLE_HEADER!r}")

    def column(name: str | None, role: str, default: str | None) -> int | None:
        if name is None:
            return None
        k = _find_column(header, name)
        if k is None and (default is None or name != default):
            raise ValueError(
                f"{path}: no column {name!r} ({role}) in the header; available columns: {header}; pass "
                f"{role}=<one of them>"
            )
        return k

    u_k = column(user_col, "user_col", None)
    i_k = column(item_col, "item_col", None)
    r_k = column(rating_col, "rating_col", "rating")
    t_k = column(time_col, "time_col", "timestamp")
    if rating_threshold is not None:
        if r_k is None:
            _no_ratings(rating_threshold, path, f"recbole, columns {header}")
        report["interactions_below_rating_threshold"] = 0
    if t_k is None:
        logger.info("%s has no timestamp column; keeping file order", path)

    fields = " ".join(header)
    bad = _MalformedLines(path, skip_malformed, report, f"{len(header)} tab-separated fields ({fields})")
    groups: dict[str, list[Any]] = {}
    interned: dict[str, str] = {}
    below = 0
    lineno = header_lineno
    for lineno, line in lines:
        parts = line.rstrip("\r\n").split("\t")
        if len(parts) != len(header):
            if line.strip():
                bad(lineno, line, f"{len(parts)} fields")
            continue
        user, item = parts[u_k].strip(), parts[i_k].strip()
        if not user or not item:
            bad(lineno, line, "empty user or item id")
            continue
        try:
            rating = float(parts[r_k]) if r_k is not None else None
            timestamp = float(parts[t_k]) if t_k is not None else None
        except ValueError:
            bad(lineno, line, "rating and timestamp must be numbers")
            continue
        if rating_threshold is not None and rating < rating_threshold:
            below += 1
            groups.setdefault(user, [])
            continue
        seq = groups.get(user)
        if seq is None:
            groups[user] = seq = []
        item = interned.setdefault(item, item)
        seq.append(item if t_k is None else (timestamp, item))
    report["lines_read"] = lineno - header_lineno  # the header is not counted
    if rating_threshold is not None:
        report["interactions_below_rating_threshold"] = below
    bad.log()
    report["interactions_read"] = sum(len(s) for s in groups.values()) + below
    return _finalize(
        groups if t_k is None else _sort_by_time(groups),
        report,
        min_user_interactions=min_user_interactions,
        min_item_interactions=min_item_interactions,
        max_history_length=max_history_length,
    )


def _ids_to_str(column: pd.Series) -> list[str]:
    """Raw ids as strings; a float column of whole numbers (what pandas makes of ints next to NaN) prints as ints."""
    if pd.api.types.is_float_dtype(column.dtype):
        values = column.dropna()
        if bool((values == np.floor(values)).all()):
            column = column.astype("Int64")
    return column.astype(str).tolist()


def from_dataframe(
    df: pd.DataFrame,
    user_col: str = "user_id",
    item_col: str = "item_id",
    time_col: str | None = None,
    rating_col: str | None = None,
    *,
    skip_malformed: bool = False,
    rating_threshold: float | None = None,
    min_user_interactions: int = 0,
    min_item_interactions: int = 0,
    max_history_length: int | None = None,
    source: str = "DataFrame",
) -> Interactions:
    """Build `Interactions` from a table with one row per interaction.

    Ids are converted to `str` (a float column of whole numbers prints as integers, `3.0` -> `"3"`). With
    `time_col`, each user's items are sorted by that column (numbers or datetimes; ties keep row order), otherwise
    row order is kept. A row with a missing user, item, time or rating (when those columns are used), or a rating or
    time that is not a number/date, is malformed (messages number rows from 0, as `df.iloc` does). `source` names
    the table in messages and in the report. Filters: see `load_interactions`.

    Raises:
        ValueError: a missing column (the message lists the available ones), a malformed row (unless
            `skip_malformed=True`), or a table without rows.
    """
    _check_options(min_user_interactions, min_item_interactions, max_history_length, rating_threshold)
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"from_dataframe needs a pandas DataFrame, got {type(df).__name__}; use read_table for files")
    for role, name in (
        ("user_col", user_col),
        ("item_col", item_col),
        ("time_col", time_col),
        ("rating_col", rating_col),
    ):
        if name is not None and name not in df.columns:
            raise ValueError(
                f"{source}: column {name!r} ({role}) not found; available columns: {list(df.columns)}; pass "
                f"{role}=<one of them>"
            )
    if rating_threshold is not None and rating_col is None:
        _no_ratings(rating_threshold, source, "table without rating_col")
    report = _new_report(source, "table")
    report["lines_read"] = len(df)
    if len(df) == 0:
        raise ValueError(f"{source} has no rows; pass a table with interactions")

    bad_rows = df[user_col].isna() | df[item_col].isna()
    why = pd.Series("missing user or item id", index=df.index, dtype=object)
    times = ratings = None
    if time_col is not None:
        times = _numeric_or_datetime(df[time_col])
        bad_time = times.isna() & ~bad_rows
        why[bad_time] = f"missing or non-numeric time in {time_col!r}"
        bad_rows |= bad_time
    if rating_col is not None:
        ratings = pd.to_numeric(df[rating_col], errors="coerce")
        bad_rating = ratings.isna() & ~bad_rows
        why[bad_rating] = f"missing or non-numeric rating in {rating_col!r}"
        bad_rows |= bad_rating
    bad = _MalformedLines(source, skip_malformed, report, "a row with user, item (and time/rating)", unit="row")
    for pos in np.flatnonzero(bad_rows.to_numpy()):
        bad(int(pos), repr(df.iloc[pos].to_dict()), why.iloc[pos])
    bad.log()
    keep = ~bad_rows.to_numpy()

    users = _ids_to_str(df[user_col][keep])
    items = _ids_to_str(df[item_col][keep])
    below = 0
    if rating_threshold is not None:
        ok = (ratings[keep] >= rating_threshold).to_numpy()
        below = int((~ok).sum())
        report["interactions_below_rating_threshold"] = below
    else:
        ok = np.ones(len(users), dtype=bool)
    groups: dict[str, list[Any]] = {}
    if times is None:
        for user, item, good in zip(users, items, ok):
            seq = groups.setdefault(user, [])
            if good:
                seq.append(item)
    else:
        for user, item, t, good in zip(users, items, times[keep].tolist(), ok):
            seq = groups.setdefault(user, [])
            if good:
                seq.append((t, item))
        groups = _sort_by_time(groups)
    report["interactions_read"] = len(users)
    return _finalize(
        groups,
        report,
        min_user_interactions=min_user_interactions,
        min_item_interactions=min_item_interactions,
        max_history_length=max_history_length,
    )


def _numeric_or_datetime(column: pd.Series) -> pd.Series:
    """Times that sort like the originals: numbers and datetimes as they are, text parsed as numbers or else as
    dates; values that cannot be parsed become NaN/NaT (and their rows malformed)."""
    if pd.api.types.is_datetime64_any_dtype(column.dtype) or pd.api.types.is_numeric_dtype(column.dtype):
        return column
    numeric = pd.to_numeric(column, errors="coerce")
    if numeric.isna().all() and column.notna().any():
        return pd.to_datetime(column, errors="coerce", utc=True, format="mixed")
    return numeric


def read_table(
    path_or_dataset: PathLike | Dataset | pd.DataFrame,
    user_col: str = "user_id",
    item_col: str = "item_id",
    time_col: str | None = None,
    rating_col: str | None = None,
    **options: Any,
) -> Interactions:
    """Read a CSV (`.csv`, `.tsv`, optionally `.gz`) or Parquet file, a `datasets.Dataset` or a DataFrame, then
    `from_dataframe` with the same column arguments and `options` (`skip_malformed`, `rating_threshold`,
    `min_user_interactions`, `min_item_interactions`, `max_history_length`).

    CSV id columns are read as text, so ids such as `007` keep their leading zeros. With `skip_malformed=True`, CSV
    lines with the wrong number of fields are skipped and counted (this uses pandas' slower Python parser).
    """
    if isinstance(path_or_dataset, Dataset):
        return from_dataframe(
            path_or_dataset.to_pandas(), user_col, item_col, time_col, rating_col, source="Dataset", **options
        )
    if isinstance(path_or_dataset, pd.DataFrame):
        return from_dataframe(path_or_dataset, user_col, item_col, time_col, rating_col, **options)
    path = _check_path(path_or_dataset)
    suffix = _base_suffix(path)
    skipped: list[list[str]] = []
    if suffix in (".csv", ".tsv"):
        kwargs: dict[str, Any] = {"sep": "," if suffix == ".csv" else "\t", "dtype": {user_col: str, item_col: str}}
        if options.get("skip_malformed"):
            kwargs.update(engine="python", on_bad_lines=lambda fields: skipped.append(fields))
        try:
            df = pd.read_csv(path, **kwargs)
        except pd.errors.EmptyDataError as err:
            raise ValueError(f"{path} is empty; pass a file with a header and interactions") from err
        except pd.errors.ParserError as err:
            raise ValueError(
                f"{path}: malformed CSV ({str(err).strip()}); fix the line or pass skip_malformed=True"
            ) from err
    elif suffix == ".parquet":
        df = pd.read_parquet(path)
    else:
        raise ValueError(
            f"{path}: read_table reads .csv, .tsv and .parquet files, got suffix {suffix!r}; convert the file or use "
            "load_interactions(format=...)"
        )
    interactions = from_dataframe(df, user_col, item_col, time_col, rating_col, source=str(path), **options)
    interactions.report["format"] = "parquet" if suffix == ".parquet" else "csv"
    if skipped:
        interactions.report["malformed_lines_skipped"] += len(skipped)
        logger.warning("skipped %d CSV lines with the wrong number of fields in %s", len(skipped), path)
    return interactions


# ---------------------------------------------------------------------------------------------------------------
# Dispatch
# ---------------------------------------------------------------------------------------------------------------


def detect_format(path: PathLike) -> str:
    """Guess the format of an interaction file from its name and, for text files, its content.

    `.inter` -> `"recbole"`; `.dat` and `.data` -> `"grouplens"`; `.csv` -> `"grouplens"` when the header is
    `userId,movieId,rating,timestamp`, else `"csv"`; `.tsv` -> `"csv"`; `.parquet` -> `"parquet"`; `.txt` or no
    suffix (a trailing `.gz` is ignored) -> `"pair"` when every non-blank line has exactly two tokens, else `"seq"`.
    """
    path = _check_path(path)
    suffix = _base_suffix(path)
    if suffix == ".inter":
        return "recbole"
    if suffix in (".dat", ".data"):
        return "grouplens"
    if suffix == ".parquet":
        return "parquet"
    if suffix == ".tsv":
        return "csv"
    if suffix == ".csv":
        for line in _lines(path):
            if line.strip():
                return "grouplens" if line.strip().replace(" ", "") == GROUPLENS_CSV_HEADER else "csv"
        return "csv"
    if suffix in (".txt", ""):
        for line in _lines(path):
            n = len(line.split())
            if n and n != 2:
                return "seq"
        return "pair"
    raise ValueError(
        f"cannot infer the format of {path} from its suffix {suffix!r}; pass format= one of {list(FORMATS[1:])}"
    )


def load_interactions(path: PathLike | Dataset | pd.DataFrame, format: str = "auto", **options: Any) -> Interactions:
    """Read interactions from any supported source.

    Args:
        path: a file (`.gz` allowed for text formats), a `datasets.Dataset` or a DataFrame (read with `read_table`).
        format: `"auto"` (see `detect_format`), `"pair"`, `"seq"`, `"grouplens"`, `"recbole"`, `"csv"` or
            `"parquet"`.
        **options: passed to the reader. Shared by all readers:
            - `skip_malformed` (False): by default the first malformed line raises `ValueError` naming the file and
              line; with True such lines are skipped, counted in `report["malformed_lines_skipped"]` and a warning
              is logged.
            - `rating_threshold` (None): keep interactions with rating >= threshold; an error for formats without
              ratings.
            - `min_user_interactions` / `min_item_interactions` (0): iterative k-core, repeated until stable;
              removed users, items and interactions are counted in the report.
            - `max_history_length` (None): keep only each user's most recent items (applied after the k-core).
            Table readers also take `user_col`, `item_col`, `time_col`, `rating_col`; `read_recbole_inter` takes the
            same column names.
    """
    readers = {
        "pair": read_pairs,
        "seq": read_seq,
        "grouplens": read_grouplens,
        "recbole": read_recbole_inter,
        "csv": read_table,
        "parquet": read_table,
    }
    if format not in FORMATS:
        raise ValueError(f"unknown format {format!r}; pass one of {list(FORMATS)}")
    if isinstance(path, Dataset | pd.DataFrame):
        if format not in ("auto", "csv", "parquet"):
            raise ValueError(f"format={format!r} is for files; a {type(path).__name__} is read with format='auto'")
        return read_table(path, **options)
    if format == "auto":
        format = detect_format(path)
        logger.info("detected format %r for %s", format, path)
    return readers[format](path, **options)


# ---------------------------------------------------------------------------------------------------------------
# Downloads
# ---------------------------------------------------------------------------------------------------------------


class DatasetDownloadError(OSError):
    """A dataset archive could not be downloaded; the message says how to proceed offline."""


@dataclass(frozen=True)
class RemoteDataset:
    """An official GroupLens archive: its URL, published MD5, and the ratings file inside it."""

    url: str
    md5: str
    ratings_member: str
    sha256: str | None = None  # not published by GroupLens; verified with md5 when None
    offline_copy: str | None = None  # a file in ../shared/data that stands in for it on machines without internet


# MD5s as published by GroupLens next to each archive.
GROUPLENS_DATASETS: dict[str, RemoteDataset] = {
    "ml-100k": RemoteDataset(
        url="https://files.grouplens.org/datasets/movielens/ml-100k.zip",
        md5="0e33842e24a9c977be4e0107933c0723",
        ratings_member="ml-100k/u.data",
        offline_copy="../shared/data/ml-100k/ml-100k.inter",
    ),
    "ml-1m": RemoteDataset(
        url="https://files.grouplens.org/datasets/movielens/ml-1m.zip",
        md5="c4d9eecfca2ab87c1945afe126590906",
        ratings_member="ml-1m/ratings.dat",
        offline_copy="../shared/data/ml-1m/ml-1m.txt.gz",
    ),
    "ml-20m": RemoteDataset(
        url="https://files.grouplens.org/datasets/movielens/ml-20m.zip",
        md5="cd245b17a1ae2cc31bb14903e1204af3",
        ratings_member="ml-20m/ratings.csv",
    ),
}


def _dataset_dir(name: str, cache_dir: PathLike | None) -> Path:
    from huggingface_hub import constants  # read at call time so a changed HF_HOME is honoured

    root = Path(cache_dir) if cache_dir is not None else Path(constants.HF_HOME) / "hyenarec" / "datasets"
    return root / name


def _hf_offline() -> bool:
    from huggingface_hub import constants

    env = os.environ.get("HF_HUB_OFFLINE", "").strip().upper()
    return bool(constants.HF_HUB_OFFLINE) or env in {"1", "ON", "YES", "TRUE"}


def _verify(archive: Path, remote: RemoteDataset) -> None:
    md5, sha256 = hashlib.md5(), hashlib.sha256()
    with open(archive, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            md5.update(block)
            sha256.update(block)
    expected, got, algo = (
        (remote.sha256, sha256.hexdigest(), "sha256") if remote.sha256 else (remote.md5, md5.hexdigest(), "md5")
    )
    if got != expected:
        raise ValueError(
            f"{archive}: {algo} is {got}, expected {expected} (the published checksum of {remote.url}); the file is "
            "corrupt or incomplete: delete it and download again"
        )


def _extract_ratings(archive: Path, remote: RemoteDataset, target: Path) -> Path:
    with zipfile.ZipFile(archive) as zf, zf.open(remote.ratings_member) as src:
        tmp = target.with_name(target.name + ".incomplete")
        with open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst)
    os.replace(tmp, target)
    return target


def download_dataset(name: str, cache_dir: PathLike | None = None) -> Path:
    """Download a MovieLens archive from GroupLens once and return the path of its ratings file.

    Files live in `$HF_HOME/hyenarec/datasets/<name>/` (or `<cache_dir>/<name>/`): the archive `<name>.zip`, checked
    against its published MD5, and the extracted ratings file (`ratings.dat` for ml-1m, `u.data` for ml-100k,
    `ratings.csv` for ml-20m), readable with `read_grouplens`. If the ratings file is already there it is used
    without network; if only the archive is there it is verified and extracted.

    Raises:
        DatasetDownloadError: at once (10 s timeout) when the download fails or `HF_HUB_OFFLINE=1`; the message
            names the URL and the file to place where to proceed offline.
        ValueError: an unknown name, or an archive whose checksum does not match.
    """
    if name not in GROUPLENS_DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {sorted(GROUPLENS_DATASETS)}")
    remote = GROUPLENS_DATASETS[name]
    folder = _dataset_dir(name, cache_dir)
    ratings = folder / Path(remote.ratings_member).name
    archive = folder / f"{name}.zip"
    if ratings.is_file():
        return ratings
    if archive.is_file():
        _verify(archive, remote)
        return _extract_ratings(archive, remote, ratings)

    def unavailable(reason: str) -> DatasetDownloadError:
        alternative = (
            f", or train on the offline copy: --data-file {remote.offline_copy}" if remote.offline_copy else ""
        )
        return DatasetDownloadError(
            f"could not download {name} from {remote.url} ({reason}). To proceed offline, get {name}.zip on a "
            f"machine with internet and put its file {remote.ratings_member} at {ratings} (or the whole archive at "
            f"{archive}){alternative}"
        )

    if _hf_offline():
        raise unavailable("HF_HUB_OFFLINE is set")
    folder.mkdir(parents=True, exist_ok=True)
    tmp = archive.with_name(archive.name + ".incomplete")
    logger.info("downloading %s to %s", remote.url, archive)
    try:
        request = urllib.request.Request(remote.url, headers={"User-Agent": "hyenarec-hf"})
        with urllib.request.urlopen(request, timeout=_DOWNLOAD_TIMEOUT_S) as response, open(tmp, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=f"Downloading {name}.zip") as bar:
                for block in iter(lambda: response.read(1 << 20), b""):
                    out.write(block)
                    bar.update(len(block))
    except (OSError, http.client.HTTPException) as err:  # URLError and timeouts are OSErrors
        tmp.unlink(missing_ok=True)
        raise unavailable(f"{type(err).__name__}: {err}") from err
    try:
        _verify(tmp, remote)
    except ValueError as err:
        tmp.unlink(missing_ok=True)
        raise ValueError(f"the download of {remote.url} is corrupt and was deleted ({err}); try again") from err
    os.replace(tmp, archive)
    return _extract_ratings(archive, remote, ratings)


# ---------------------------------------------------------------------------------------------------------------
# Item vocabulary
# ---------------------------------------------------------------------------------------------------------------


class ItemVocab:
    """Maps raw item ids (`str`) to indices `1..N` and back; index `0` is padding.

    `ItemVocab(item_ids)` gives `item_ids[i]` the index `i + 1`. Save it with `to_list()` (e.g. as JSON next to the
    model) and rebuild it with `ItemVocab(saved_list)`.
    """

    PAD_INDEX = 0

    def __init__(self, item_ids: Sequence[str]):
        ids = list(item_ids)
        not_str = [item for item in ids if not isinstance(item, str)]
        if not_str:
            raise TypeError(
                f"item ids must be str, got {len(not_str)} others such as {not_str[:10]}; convert them with str()"
            )
        self._ids: list[str] = ids
        self._index: dict[str, int] = {item: k + 1 for k, item in enumerate(ids)}
        if len(self._index) != len(ids):
            dups = [item for item, count in Counter(ids).items() if count > 1]
            raise ValueError(f"item ids must be unique, got {len(dups)} repeated such as {dups[:10]}; deduplicate them")

    @classmethod
    def from_sequences(cls, sequences: Iterable[Iterable[str]]) -> ItemVocab:
        """Vocabulary of every item in `sequences`, indexed by first appearance (in sequence order, then position)."""
        return cls(list(dict.fromkeys(chain.from_iterable(sequences))))

    def encode(self, items: Iterable[str], on_unknown: str = "error") -> list[int]:
        """Indices of `items`. Unknown ids raise `ValueError` (`on_unknown="error"`) or are left out (`"skip"`)."""
        if on_unknown not in ("error", "skip"):
            raise ValueError(f"on_unknown must be 'error' or 'skip', got {on_unknown!r}")
        index = self._index
        if on_unknown == "skip":
            return [index[item] for item in items if item in index]
        items = list(items)
        try:
            return [index[item] for item in items]
        except KeyError:
            unknown = list(dict.fromkeys(item for item in items if item not in index))
            hint = " (ids are str: convert them with str())" if any(not isinstance(i, str) for i in unknown) else ""
            raise ValueError(
                f"{len(unknown)} item ids are not in the vocabulary ({len(self):,} items): {unknown[:10]}{hint}; pass "
                "on_unknown='skip' to drop them, or add them with vocab.extend(...) (and resize the model's item "
                "embeddings)"
            ) from None

    def decode(self, indices: Iterable[int]) -> list[str]:
        """Raw item ids of `indices`; `0` (padding) or an index outside `1..N` raises `ValueError`."""
        out = []
        n = len(self._ids)
        for value in indices:
            k = int(value)
            if not 1 <= k <= n:
                what = "the padding index" if k == 0 else "outside the vocabulary"
                raise ValueError(
                    f"index {k} is {what} (items are 1..{n}); drop padding before decoding and use indices from this "
                    "vocabulary"
                )
            out.append(self._ids[k - 1])
        return out

    def extend(self, new_item_ids: Iterable[str]) -> list[str]:
        """Append the ids not yet known (indices `N+1, ...` in order) and return them, e.g. for fine-tuning on a
        catalogue with new items. Existing indices never change."""
        added = []
        for item in new_item_ids:
            if not isinstance(item, str):
                raise TypeError(f"item ids must be str, got {item!r}; convert them with str()")
            if item not in self._index:
                self._ids.append(item)
                self._index[item] = len(self._ids)
                added.append(item)
        return added

    def _digest(self) -> str:
        return hashlib.sha256("\n".join(self._ids).encode()).hexdigest()

    def to_list(self) -> list[str]:
        """The raw ids in index order (`to_list()[i]` has index `i + 1`)."""
        return list(self._ids)

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, item: object) -> bool:
        return item in self._index

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ItemVocab):
            return NotImplemented
        return self._ids == other._ids

    __hash__ = None  # mutable (extend)

    def __repr__(self) -> str:
        return f"ItemVocab({len(self)} items, first {self._ids[:3]})"


# ---------------------------------------------------------------------------------------------------------------
# Splits
# ---------------------------------------------------------------------------------------------------------------

_IDS = List(Value("int64"))
_TRAIN_FEATURES = Features({"user": Value("string"), "input_ids": _IDS})
_EVAL_FEATURES = Features({"user": Value("string"), "input_ids": _IDS, "target": Value("int64")})


def _encode_batch(batch: dict[str, list], vocab: ItemVocab) -> dict[str, list]:
    return {"item_ids": [vocab.encode(items, on_unknown="skip") for items in batch["items"]]}


def _train_batch(batch: dict[str, list]) -> dict[str, list]:
    # Users with >= 3 items give their history minus the two held-out targets; users with exactly 2 items
    # (never evaluated) give both.
    return {"input_ids": [ids[:-2] if len(ids) >= 3 else ids for ids in batch["item_ids"]]}


def _validation_batch(batch: dict[str, list]) -> dict[str, list]:
    return {"input_ids": [ids[:-2] for ids in batch["item_ids"]], "target": [ids[-2] for ids in batch["item_ids"]]}


def _test_batch(batch: dict[str, list]) -> dict[str, list]:
    return {"input_ids": [ids[:-1] for ids in batch["item_ids"]], "target": [ids[-1] for ids in batch["item_ids"]]}


def build_splits(
    interactions: Interactions, vocab: ItemVocab | None = None, *, on_unknown: str = "error"
) -> tuple[DatasetDict, ItemVocab]:
    """Leave-one-out splits by time, encoded with `vocab` (built from all interactions when None).

    For a user with items `x_1 .. x_n` (chronological, as indices):

    - `train`: `user`, `input_ids = x_1 .. x_{n-2}`, the whole training history (windowing long histories is
      `window_sequences`' job);
    - `validation`: `user`, `input_ids = x_1 .. x_{n-2}`, `target = x_{n-1}`;
    - `test`: `user`, `input_ids = x_1 .. x_{n-1}`, `target = x_n`.

    Users with fewer than 3 items are not evaluated: with 2 items their whole sequence goes to `train`, with 1 they
    are dropped. Users with exactly 3 items are evaluated but their 1-item training history gives no training pair,
    so they have no `train` row. Every such user is counted in `interactions.report["splits"]`, in each split's
    `info.description` and in a logged message.

    With a given `vocab`, items it does not know raise `ValueError` (`on_unknown="error"`) or are removed before
    splitting and counted (`"skip"`).

    Returns:
        `(DatasetDict(train=..., validation=..., test=...), vocab)`; list columns are int64.
    """
    if on_unknown not in ("error", "skip"):
        raise ValueError(f"on_unknown must be 'error' or 'skip', got {on_unknown!r}")
    unknown_events = unknown_items = 0
    if vocab is None:
        vocab = ItemVocab.from_sequences(interactions.sequences)
    else:
        unknown = Counter(item for seq in interactions.sequences for item in seq if item not in vocab)
        unknown_events, unknown_items = sum(unknown.values()), len(unknown)
        if unknown and on_unknown == "error":
            raise ValueError(
                f"{unknown_events} interactions with {unknown_items} items are not in the given vocabulary "
                f"({len(vocab):,} items): {list(unknown)[:10]}; pass on_unknown='skip' to drop them, or add them "
                "with vocab.extend(...) (and resize the model's item embeddings)"
            )

    raw = Dataset.from_dict(
        {"user": interactions.users, "items": interactions.sequences},
        features=Features({"user": Value("string"), "items": List(Value("string"))}),
    )
    encoded = raw.map(
        _encode_batch,
        batched=True,
        fn_kwargs={"vocab": vocab},
        remove_columns=["items"],
        features=Features({"user": Value("string"), "item_ids": _IDS}),
        # datasets would otherwise fingerprint the vocab by pickling it item by item (slow for big catalogues)
        new_fingerprint=hashlib.sha256(f"{raw._fingerprint}:{vocab._digest()}".encode()).hexdigest()[:32],
        desc="Encoding items",
    )
    lengths = pc.list_value_length(encoded.data.column("item_ids")).to_numpy(zero_copy_only=False)
    evaluated = np.flatnonzero(lengths >= 3)
    trained = np.flatnonzero((lengths >= 4) | (lengths == 2))

    def split(indices: np.ndarray, fn: Any, features: Features, desc: str) -> Dataset:
        return encoded.select(indices).map(fn, batched=True, remove_columns=["item_ids"], features=features, desc=desc)

    splits = DatasetDict(
        train=split(trained, _train_batch, _TRAIN_FEATURES, "Train split"),
        validation=split(evaluated, _validation_batch, _EVAL_FEATURES, "Validation split"),
        test=split(evaluated, _test_batch, _EVAL_FEATURES, "Test split"),
    )

    counts = {
        "vocab_size": len(vocab),
        "train_users": len(splits["train"]),
        "evaluated_users": len(evaluated),
        "users_train_only_2_items": int((lengths == 2).sum()),
        "users_dropped_1_item": int((lengths == 1).sum()),
        "users_without_train_pair_3_items": int((lengths == 3).sum()),
        "unknown_interactions_skipped": unknown_events,
        "unknown_items_skipped": unknown_items,
        "users_empty_after_unknown_skip": int((lengths == 0).sum()),
    }
    interactions.report["splits"] = counts
    description = (
        "Leave-one-out split by hyenarec_hf.data.build_splits: validation target = second-to-last item, test "
        f"target = last item, train = all but the last two. Counts: {counts}"
    )
    for dataset in splits.values():
        dataset.info.description = description
    excluded = {k: v for k, v in counts.items() if k.startswith(("users_", "unknown_")) and v}
    log = logger.warning if excluded else logger.info
    log(
        "leave-one-out splits: %d train rows, %d evaluated users; users not in every split: %s "
        "(users need >= 3 items to be evaluated and >= 2 training items to give a training pair)",
        counts["train_users"],
        counts["evaluated_users"],
        excluded or "none",
    )
    return splits, vocab


def _window_batch(batch: dict[str, list], column: str, max_length: int, stride: int) -> dict[str, list]:
    out: dict[str, list] = {name: [] for name in batch}
    size = max_length + 1
    for row in range(len(batch[column])):
        ids = batch[column][row]
        if len(ids) <= size:
            starts = [0]
        else:
            starts = []
            end = len(ids)
            while True:
                start = max(end - size, 0)
                starts.append(start)
                if start == 0:
                    break
                end -= stride
            starts.reverse()
        for start in starts:
            for name in batch:
                out[name].append(ids[start : start + size] if name == column else batch[name][row])
    return out


def window_sequences(
    train_dataset: Dataset, max_length: int, stride: int | None = None, *, column: str = "input_ids"
) -> Dataset:
    """Cut long training histories into windows that a model with context `max_length` can train on.

    A next-item model reads `max_length` items and predicts the next one at each position, so a window holds
    `max_length + 1` items. A history longer than that is cut into windows ending at its last item, then ending
    `stride` items earlier, and so on, the last window starting at the first item. With `stride <= max_length`
    every item but the first is a label in at least one window (with the default `stride = max_length`, consecutive
    windows share one item, so only the oldest window repeats labels). Shorter histories are kept as they are. Other columns are repeated for each window; windows of one user
    come out oldest first.

    Args:
        train_dataset: the `train` split of `build_splits` (or any dataset with a list column `column`).
        max_length: the model's context length (>= 1).
        stride: how far consecutive windows' ends move back; between 1 and `max_length` (default `max_length`).
        column: the list column to cut.
    """
    if not isinstance(max_length, int) or max_length < 1:
        raise ValueError(f"max_length must be an integer >= 1, got {max_length!r}")
    stride = max_length if stride is None else stride
    if not isinstance(stride, int) or not 1 <= stride <= max_length:
        raise ValueError(
            f"stride must be an integer between 1 and max_length={max_length}, got {stride!r}; a larger stride would "
            "leave items that are never a label"
        )
    if column not in train_dataset.column_names:
        raise ValueError(
            f"column {column!r} not in the dataset; available columns: {train_dataset.column_names}; pass column=..."
        )
    return train_dataset.map(
        _window_batch,
        batched=True,
        fn_kwargs={"column": column, "max_length": max_length, "stride": stride},
        remove_columns=train_dataset.column_names,
        features=train_dataset.features,
        desc="Windowing histories",
    )
