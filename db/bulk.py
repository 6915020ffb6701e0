"""Bulk reads and writes through each driver's fast path.

SQLite uses ``executemany`` inside the caller's transaction; PostgreSQL uses
``COPY``. Columns travel as numpy arrays, never as ORM objects.
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Connection

# Rows per executemany call on SQLite and per COPY chunk on PostgreSQL.
BATCH_ROWS = 100_000


def insert_rows(
    connection: Connection,
    table: str,
    columns: Mapping[str, np.ndarray],
    *,
    on_conflict: str = "",
) -> int:
    """Insert the rows given column-wise into ``table``; return the row count.

    Args:
        connection: an open connection inside the caller's transaction.
        table: the table name.
        columns: column name -> 1-D array; all arrays have the same length.
        on_conflict: an ``ON CONFLICT ...`` clause. PostgreSQL's COPY has none,
            so with a clause the rows go through a temporary table first.
    """
    names = list(columns)
    n_rows = _common_length(columns)
    if n_rows == 0:
        return 0
    if connection.dialect.name == "postgresql":
        _copy_into(connection, table, names, columns, on_conflict)
    else:
        _executemany_into(connection, table, names, columns, on_conflict)
    return n_rows


def read_columns(
    connection: Connection, query: str, dtypes: Mapping[str, Any]
) -> dict[str, np.ndarray]:
    """Run ``query`` and return its columns as arrays of the given dtypes.

    ``dtypes`` maps each selected column, in order, to a numpy dtype.
    """
    names = list(dtypes)
    if connection.dialect.name == "postgresql":
        frame = _copy_out(connection, query, names)
    else:
        frame = _fetch_all(connection, query, names)
    return {name: frame[name].to_numpy(dtype=dtypes[name]) for name in names}


def _common_length(columns: Mapping[str, np.ndarray]) -> int:
    lengths = {len(values) for values in columns.values()}
    if len(lengths) != 1:
        raise ValueError(f"columns have different lengths: {sorted(lengths)}")
    return lengths.pop()


def _executemany_into(
    connection: Connection,
    table: str,
    names: Sequence[str],
    columns: Mapping[str, np.ndarray],
    on_conflict: str,
) -> None:
    placeholders = ", ".join("?" for _ in names)
    sql = (
        f"INSERT INTO {table} ({', '.join(names)}) "
        f"VALUES ({placeholders}) {on_conflict}"
    )
    cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
    n_rows = _common_length(columns)
    for start in range(0, n_rows, BATCH_ROWS):
        stop = start + BATCH_ROWS
        # tolist() turns numpy scalars into Python ones, which sqlite3 binds.
        chunk = [columns[name][start:stop].tolist() for name in names]
        cursor.executemany(sql, zip(*chunk, strict=True))
    cursor.close()


def _copy_into(
    connection: Connection,
    table: str,
    names: Sequence[str],
    columns: Mapping[str, np.ndarray],
    on_conflict: str,
) -> None:
    cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
    target = table
    if on_conflict:
        target = f"_incoming_{table}"
        cursor.execute(
            f"CREATE TEMPORARY TABLE {target} "
            f"(LIKE {table} INCLUDING DEFAULTS) ON COMMIT DROP"
        )
    column_list = ", ".join(names)
    frame = pd.DataFrame({name: columns[name] for name in names})
    with cursor.copy(f"COPY {target} ({column_list}) FROM STDIN (FORMAT csv)") as copy:
        for start in range(0, len(frame), BATCH_ROWS):
            buffer = io.StringIO()
            frame.iloc[start : start + BATCH_ROWS].to_csv(
                buffer, header=False, index=False
            )
            copy.write(buffer.getvalue())
    if on_conflict:
        cursor.execute(
            f"INSERT INTO {table} ({column_list}) "
            f"SELECT {column_list} FROM {target} {on_conflict}"
        )
        cursor.execute(f"DROP TABLE {target}")
    cursor.close()


def _fetch_all(connection: Connection, query: str, names: Sequence[str]) -> pd.DataFrame:
    # Values stream from the driver's cursor straight into one float64 array,
    # skipping per-row Python objects; ids up to 2**53 stay exact.
    cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
    cursor.execute(query)
    flat = np.fromiter(itertools.chain.from_iterable(cursor), dtype=np.float64)
    cursor.close()
    table = flat.reshape(-1, len(names))
    return pd.DataFrame({name: table[:, i] for i, name in enumerate(names)})


def _copy_out(connection: Connection, query: str, names: Sequence[str]) -> pd.DataFrame:
    cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
    buffer = io.BytesIO()
    with cursor.copy(f"COPY ({query}) TO STDOUT (FORMAT csv)") as copy:
        for chunk in copy:
            buffer.write(chunk)
    cursor.close()
    buffer.seek(0)
    if buffer.getbuffer().nbytes == 0:
        return pd.DataFrame({name: [] for name in names})
    return pd.read_csv(buffer, header=None, names=list(names))
