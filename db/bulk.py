"""Bulk reads and writes through each driver's fast path.

SQLite uses ``executemany`` inside the caller's transaction. PostgreSQL uses
``COPY``: binary when every column is numeric, CSV otherwise. Columns travel
as numpy arrays, never as ORM objects or per-row dicts.
"""

from __future__ import annotations

import io
import itertools
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Connection, Engine, Table
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.schema import AddConstraint, DropConstraint

# Rows per executemany call on SQLite and per COPY chunk on PostgreSQL.
BATCH_ROWS = 100_000

# SQLite page cache of a bulk load's connection, in KiB; used only as needed.
BULK_CACHE_KIB = 256 * 1024

# PostgreSQL column types that binary COPY writes from numpy, with the
# big-endian dtype of their wire format.
BINARY_TYPES = {
    "smallint": np.dtype(">i2"),
    "integer": np.dtype(">i4"),
    "bigint": np.dtype(">i8"),
    "real": np.dtype(">f4"),
    "double precision": np.dtype(">f8"),
}
# Binary COPY file header: signature, flags, header extension length.
COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
COPY_TRAILER = b"\xff\xff"

Columns = Mapping[str, np.ndarray]


def insert_rows(connection: Connection, table: str, columns: Columns) -> int:
    """Insert the rows given column-wise into ``table``; return the row count.

    Args:
        connection: an open connection inside the caller's transaction.
        table: the table name.
        columns: column name -> 1-D array; all arrays have the same length.
    """
    n_rows = _common_length(columns)
    if n_rows == 0:
        return 0
    with _driver_errors(connection, f"bulk insert into {table}"):
        if connection.dialect.name == "postgresql":
            _copy_into(connection, table, columns)
        else:
            _executemany(connection, _insert_sql(table, list(columns)), columns)
    return n_rows


def upsert_rows(
    connection: Connection,
    table: str,
    columns: Columns,
    key: Sequence[str],
    update: Sequence[str] = (),
) -> int:
    """Insert rows, or update the ``update`` columns of rows whose key exists.

    With no ``update`` columns an existing row is left as it is. Returns the
    number of rows given.
    """
    n_rows = _common_length(columns)
    if n_rows == 0:
        return 0
    with _driver_errors(connection, f"bulk upsert into {table}"):
        if connection.dialect.name == "postgresql":
            _merge_via_temp_table(connection, table, columns, key, update)
        else:
            _executemany(connection, _upsert_sql(table, columns, key, update), columns)
    return n_rows


@contextmanager
def bulk_load(engine: Engine, table: Table) -> Iterator[Connection]:
    """Open one transaction for a bulk load that checks ``table``'s foreign keys once.

    Checking each row as it arrives made loading a million ratings several
    times slower: PostgreSQL runs a trigger per row, SQLite a lookup per row.
    Instead, PostgreSQL drops the constraints and adds them back at the end,
    which validates every row in one join but holds an exclusive lock on
    ``table`` until commit. SQLite turns enforcement off for this connection
    and runs ``PRAGMA foreign_key_check`` before commit.

    Raises:
        IntegrityError: a loaded row references a missing parent row; the
            transaction is rolled back.
    """
    if engine.dialect.name == "postgresql":
        with engine.begin() as connection:
            constraints = sorted(
                table.foreign_key_constraints, key=lambda fk: str(fk.name)
            )
            for constraint in constraints:
                connection.execute(DropConstraint(constraint))
            yield connection
            for constraint in constraints:
                connection.execute(AddConstraint(constraint))
        return
    # IMMEDIATE: the load reads counts before it writes (see write_transaction).
    with engine.connect().execution_options(sqlite_begin="IMMEDIATE") as connection:
        # The pragma is a no-op inside a transaction, so it goes to the driver
        # before SQLAlchemy begins one.
        driver: Any = connection.connection.driver_connection
        driver.execute("PRAGMA foreign_keys = OFF")
        # With SQLite's default 2 MiB page cache, a million-row load spills
        # pages to the WAL over and over (measured: 8.9 s instead of 4.9 s).
        default_cache = driver.execute("PRAGMA cache_size").fetchone()[0]
        driver.execute(f"PRAGMA cache_size = -{BULK_CACHE_KIB}")
        try:
            with connection.begin():
                yield connection
                _check_sqlite_foreign_keys(connection, table.name)
        finally:
            driver.execute("PRAGMA foreign_keys = ON")
            driver.execute(f"PRAGMA cache_size = {int(default_cache)}")


def _check_sqlite_foreign_keys(connection: Connection, table: str) -> None:
    statement = f"PRAGMA foreign_key_check({table})"
    violations = connection.exec_driver_sql(statement).fetchall()
    if violations:
        first = violations[0]
        message = (
            f"{len(violations)} rows of {table} reference missing rows in "
            f"{first[2]} (first: rowid {first[1]})"
        )
        raise IntegrityError(statement, None, sqlite3.IntegrityError(message))


def read_columns(
    connection: Connection, query: str, dtypes: Mapping[str, Any]
) -> dict[str, np.ndarray]:
    """Run ``query`` and return its numeric columns as arrays of the given dtypes.

    ``dtypes`` maps each selected column, in order, to a numpy dtype. The
    columns must be NOT NULL numbers.
    """
    names = list(dtypes)
    with _driver_errors(connection, query):
        if connection.dialect.name == "postgresql":
            frame = _copy_out(connection, query, names)
        else:
            frame = _fetch_all(connection, query, names)
    return {name: frame[name].to_numpy(dtype=dtypes[name]) for name in names}


def _common_length(columns: Columns) -> int:
    lengths = {len(values) for values in columns.values()}
    if len(lengths) != 1:
        raise ValueError(f"columns have different lengths: {sorted(lengths)}")
    return lengths.pop()


def _insert_sql(table: str, names: Sequence[str]) -> str:
    placeholders = ", ".join("?" for _ in names)
    return f"INSERT INTO {table} ({', '.join(names)}) VALUES ({placeholders})"


def _upsert_sql(
    table: str, columns: Columns, key: Sequence[str], update: Sequence[str]
) -> str:
    if update:
        assignments = ", ".join(f"{name} = excluded.{name}" for name in update)
        action = f"DO UPDATE SET {assignments}"
    else:
        action = "DO NOTHING"
    conflict = f" ON CONFLICT ({', '.join(key)}) {action}"
    return _insert_sql(table, list(columns)) + conflict


@contextmanager
def _driver_errors(connection: Connection, statement: str) -> Iterator[None]:
    """Raise the driver's errors as SQLAlchemy's, as ``execute()`` would.

    The fast paths use the driver's cursor directly, so without this a full
    disk or a lost connection would escape as ``sqlite3`` or ``psycopg``
    errors that callers do not expect.
    """
    dbapi = connection.dialect.loaded_dbapi
    try:
        yield
    except dbapi.Error as exc:
        raise DBAPIError.instance(statement, None, exc, dbapi.Error) from exc


def _raw_cursor(connection: Connection) -> Any:
    return connection.connection.driver_connection.cursor()  # type: ignore[union-attr]


def _executemany(connection: Connection, sql: str, columns: Columns) -> None:
    cursor = _raw_cursor(connection)
    n_rows = _common_length(columns)
    for start in range(0, n_rows, BATCH_ROWS):
        stop = start + BATCH_ROWS
        # tolist() turns numpy scalars into Python ones, which sqlite3 binds.
        chunk = [values[start:stop].tolist() for values in columns.values()]
        cursor.executemany(sql, zip(*chunk, strict=True))
    cursor.close()


def _merge_via_temp_table(
    connection: Connection,
    table: str,
    columns: Columns,
    key: Sequence[str],
    update: Sequence[str],
) -> None:
    # COPY has no ON CONFLICT, and INSERT ... ON CONFLICT row by row is slow,
    # so load a temporary table and merge with two set-based statements.
    staging = f"_staging_{table}"
    cursor = _raw_cursor(connection)
    cursor.execute(
        f"CREATE TEMPORARY TABLE {staging} (LIKE {table} INCLUDING DEFAULTS) "
        "ON COMMIT DROP"
    )
    _copy_into(connection, staging, columns, types_of=table)
    matches = " AND ".join(f"t.{name} = s.{name}" for name in key)
    if update:
        assignments = ", ".join(f"{name} = s.{name}" for name in update)
        targets = ", ".join(f"t.{name}" for name in update)
        sources = ", ".join(f"s.{name}" for name in update)
        cursor.execute(
            f"UPDATE {table} AS t SET {assignments} FROM {staging} AS s "
            f"WHERE {matches} AND ({targets}) IS DISTINCT FROM ({sources})"
        )
    names = ", ".join(columns)
    cursor.execute(
        f"INSERT INTO {table} ({names}) SELECT {names} FROM {staging} AS s "
        f"WHERE NOT EXISTS (SELECT 1 FROM {table} AS t WHERE {matches})"
    )
    cursor.execute(f"DROP TABLE {staging}")
    cursor.close()


def _copy_into(
    connection: Connection, table: str, columns: Columns, types_of: str | None = None
) -> None:
    types = _column_types(connection, types_of or table)
    wire = [BINARY_TYPES.get(types[name]) for name in columns]
    names = ", ".join(columns)
    cursor = _raw_cursor(connection)
    if all(dtype is not None for dtype in wire):
        with cursor.copy(f"COPY {table} ({names}) FROM STDIN (FORMAT binary)") as copy:
            for chunk in _binary_chunks(columns, wire):  # type: ignore[arg-type]
                copy.write(chunk)
    else:
        with cursor.copy(f"COPY {table} ({names}) FROM STDIN (FORMAT csv)") as copy:
            for text_chunk in _csv_chunks(columns):
                copy.write(text_chunk)
    cursor.close()


def _column_types(connection: Connection, table: str) -> dict[str, str]:
    cursor = _raw_cursor(connection)
    cursor.execute(
        "SELECT attname, format_type(atttypid, NULL) FROM pg_attribute "
        "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
        (table,),
    )
    types = {str(name): str(kind) for name, kind in cursor.fetchall()}
    cursor.close()
    return types


def _binary_chunks(columns: Columns, wire: Sequence[np.dtype]) -> Iterator[bytes]:
    """Yield PostgreSQL binary COPY data: per row a field count, then per field
    its byte length and big-endian value. Numbers never need NULL markers here."""
    fields: list[tuple[str, Any]] = [("n_fields", ">i2")]
    for index, dtype in enumerate(wire):
        fields += [(f"length_{index}", ">i4"), (f"value_{index}", dtype)]
    record = np.dtype(fields)
    n_rows = _common_length(columns)
    yield COPY_HEADER
    for start in range(0, n_rows, BATCH_ROWS):
        stop = min(start + BATCH_ROWS, n_rows)
        block = np.empty(stop - start, dtype=record)
        block["n_fields"] = len(wire)
        for index, (name, dtype) in enumerate(zip(columns, wire, strict=True)):
            values = np.asarray(columns[name][start:stop])
            _check_fits(name, values, dtype)
            block[f"length_{index}"] = dtype.itemsize
            block[f"value_{index}"] = values
        yield block.tobytes()
    yield COPY_TRAILER


def _check_fits(name: str, values: np.ndarray, dtype: np.dtype) -> None:
    # numpy wraps integers that overflow the target type silently.
    if dtype.kind == "i" and len(values):
        limits = np.iinfo(dtype)
        if values.min() < limits.min or values.max() > limits.max:
            raise ValueError(
                f"column {name}: values {values.min()}..{values.max()} do not fit "
                f"the database type ({dtype.itemsize * 8}-bit integer)"
            )


def _csv_chunks(columns: Columns) -> Iterator[str]:
    frame = pd.DataFrame(dict(columns))
    for start in range(0, len(frame), BATCH_ROWS):
        buffer = io.StringIO()
        frame.iloc[start : start + BATCH_ROWS].to_csv(buffer, header=False, index=False)
        yield buffer.getvalue()


def _fetch_all(
    connection: Connection, query: str, names: Sequence[str]
) -> pd.DataFrame:
    # Values stream from the driver's cursor straight into one float64 array,
    # skipping per-row Python objects; ids up to 2**53 stay exact.
    cursor = _raw_cursor(connection)
    cursor.execute(query)
    flat = np.fromiter(itertools.chain.from_iterable(cursor), dtype=np.float64)
    cursor.close()
    table = flat.reshape(-1, len(names))
    return pd.DataFrame({name: table[:, i] for i, name in enumerate(names)})


def _copy_out(connection: Connection, query: str, names: Sequence[str]) -> pd.DataFrame:
    cursor = _raw_cursor(connection)
    buffer = io.BytesIO()
    with cursor.copy(f"COPY ({query}) TO STDOUT (FORMAT csv)") as copy:
        for chunk in copy:
            buffer.write(chunk)
    cursor.close()
    buffer.seek(0)
    if buffer.getbuffer().nbytes == 0:
        return pd.DataFrame({name: [] for name in names})
    return pd.read_csv(buffer, header=None, names=list(names))
