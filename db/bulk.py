"""Bulk reads and writes through each driver's fast path.

SQLite uses ``executemany`` of multi-row ``INSERT`` statements inside the
caller's transaction. PostgreSQL uses ``COPY``: binary when every column is
numeric, CSV otherwise. Columns travel as numpy arrays, never as ORM objects
or per-row dicts.
"""

from __future__ import annotations

import io
import itertools
import logging
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import Connection, Engine, Table
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.schema import AddConstraint, DropConstraint

log = logging.getLogger(__name__)

# Rows per executemany call on SQLite and per COPY chunk on PostgreSQL.
BATCH_ROWS = 100_000

# Rows per INSERT statement on SQLite, fewer when the row has so many columns
# that SQLite's limit on bound parameters would be exceeded. The ml-1m ratings
# upsert took 0.65 s with 250 rows against 1.9 s with one row per statement,
# and 50-1000 rows measured about the same (2-core VM, SQLite 3.40).
ROWS_PER_STATEMENT = 250

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


@dataclass(frozen=True)
class ChangeStamp:
    """A timestamp column that an upsert moves to the database's current time.

    An existing row gets ``CURRENT_TIMESTAMP`` in ``column`` when one of the
    ``watched`` columns changes value, and keeps its stamp otherwise. Inserted
    rows get the column's server default. This is what an ``AFTER UPDATE OF``
    trigger such as ``ratings_changed_at`` does, done by the upsert itself.
    """

    column: str
    watched: tuple[str, ...]


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
    names = list(columns)
    with _driver_errors(connection, f"bulk insert into {table}"):
        if connection.dialect.name == "postgresql":
            _copy_into(connection, table, columns)
        else:
            _executemany(
                connection, columns, lambda rows: _insert_sql(table, names, rows)
            )
    return n_rows


def upsert_rows(
    connection: Connection,
    table: str,
    columns: Columns,
    key: Sequence[str],
    update: Sequence[str] = (),
    stamp: ChangeStamp | None = None,
) -> int:
    """Insert rows, or update the ``update`` columns of rows whose key exists.

    With no ``update`` columns and no ``stamp`` an existing row is left as it
    is. Returns the number of rows given.

    Args:
        connection: an open connection inside the caller's transaction.
        table: the table name.
        columns: column name -> 1-D array; all arrays have the same length.
        key: the columns of the primary key or unique constraint to match on.
        update: columns that an existing row takes from the given row.
        stamp: a timestamp column to move when a watched column changes.
    """
    n_rows = _common_length(columns)
    if n_rows == 0:
        return 0
    names = list(columns)
    with _driver_errors(connection, f"bulk upsert into {table}"):
        if connection.dialect.name == "postgresql":
            _merge_via_temp_table(connection, table, columns, key, update, stamp)
        else:
            _executemany(
                connection,
                columns,
                lambda rows: _upsert_sql(table, names, key, update, stamp, rows),
            )
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

    On SQLite, when ``table`` has no rows at the start, its non-unique
    indexes are dropped and built again after the load, which is faster than
    updating them row by row. DDL is transactional in SQLite, so a rolled-back
    load leaves the indexes as they were.

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
                deferred_indexes = _drop_indexes_if_empty(connection, table.name)
                yield connection
                _create_indexes(connection, deferred_indexes)
                _check_sqlite_foreign_keys(connection, table.name)
        finally:
            driver.execute("PRAGMA foreign_keys = ON")
            driver.execute(f"PRAGMA cache_size = {int(default_cache)}")


@contextmanager
def sqlite_trigger_dropped(connection: Connection, name: str) -> Iterator[None]:
    """Drop a SQLite trigger for the block and create it again after the block.

    The trigger is created again from the SQL that SQLite stored for it, so it
    comes back exactly as its migration defined it. The block must do the
    trigger's work itself. A trigger that does not exist stays absent.

    SQLite DDL is transactional, so the drop takes effect only if the caller's
    transaction commits. When the block raises, the trigger is not created
    here; the rollback of that transaction restores it.

    Raises:
        ValueError: the connection is not SQLite or is outside a transaction.
    """
    if connection.dialect.name != "sqlite" or not connection.in_transaction():
        raise ValueError(
            f"dropping trigger {name} needs a SQLite connection inside a "
            "transaction, so that a failure restores the trigger"
        )
    row = connection.exec_driver_sql(
        "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = ?", (name,)
    ).first()
    if row is None:
        yield
        return
    connection.exec_driver_sql(f'DROP TRIGGER "{name}"')
    yield
    connection.exec_driver_sql(row.sql)


def _drop_indexes_if_empty(connection: Connection, table: str) -> list[str]:
    """Drop the non-unique indexes of ``table`` if it has no rows; return their SQL.

    Unique indexes stay, because an upsert's ``ON CONFLICT`` target may need
    them. The primary key's index cannot be dropped.
    """
    has_rows = connection.exec_driver_sql(f"SELECT 1 FROM {table} LIMIT 1").first()
    if has_rows is not None:
        return []
    # PRAGMA index_list rows: seq, name, unique, origin ("c" for CREATE
    # INDEX), partial.
    index_list = connection.exec_driver_sql(f"PRAGMA index_list({table})").all()
    names = [row[1] for row in index_list if row[2] == 0 and row[3] == "c"]
    statements = []
    for name in sorted(names):
        statements.append(
            connection.exec_driver_sql(
                "SELECT sql FROM sqlite_master WHERE type = 'index' AND name = ?",
                (name,),
            ).scalar_one()
        )
        connection.exec_driver_sql(f'DROP INDEX "{name}"')
    return statements


def _create_indexes(connection: Connection, statements: Sequence[str]) -> None:
    started = time.perf_counter()
    for statement in statements:
        connection.exec_driver_sql(statement)
    if statements:
        log.debug(
            "built %d indexes after the load in %.2f s",
            len(statements),
            time.perf_counter() - started,
        )


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
            columns = _copy_out(connection, query, names)
        else:
            columns = _fetch_all(connection, query, names)
    return {name: columns[name].astype(dtypes[name], copy=False) for name in names}


def _common_length(columns: Columns) -> int:
    lengths = {len(values) for values in columns.values()}
    if len(lengths) != 1:
        raise ValueError(f"columns have different lengths: {sorted(lengths)}")
    return lengths.pop()


def _insert_sql(table: str, names: Sequence[str], n_rows: int) -> str:
    """Build an INSERT of ``n_rows`` rows with ``?`` parameters, row by row."""
    row = "(" + ", ".join("?" for _ in names) + ")"
    rows = ", ".join(itertools.repeat(row, n_rows))
    return f"INSERT INTO {table} ({', '.join(names)}) VALUES {rows}"


def _upsert_sql(
    table: str,
    names: Sequence[str],
    key: Sequence[str],
    update: Sequence[str],
    stamp: ChangeStamp | None,
    n_rows: int,
) -> str:
    # In DO UPDATE, "excluded.x" is the given row and "table.x" the stored one.
    assignments = [f"{name} = excluded.{name}" for name in update]
    if stamp is not None:
        changed = " OR ".join(
            f"{table}.{name} IS NOT excluded.{name}" for name in stamp.watched
        )
        assignments.append(
            f"{stamp.column} = CASE WHEN {changed} THEN CURRENT_TIMESTAMP "
            f"ELSE {table}.{stamp.column} END"
        )
    action = f"DO UPDATE SET {', '.join(assignments)}" if assignments else "DO NOTHING"
    conflict = f" ON CONFLICT ({', '.join(key)}) {action}"
    return _insert_sql(table, names, n_rows) + conflict


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


def _executemany(
    connection: Connection, columns: Columns, statement: Callable[[int], str]
) -> None:
    """Run ``statement(n_rows)``, a multi-row INSERT, over all rows of ``columns``.

    Each execution binds ``n_rows`` rows as one flat parameter list, row by
    row. The rows left over in each batch go in one shorter statement.
    """
    cursor = _raw_cursor(connection)
    n_rows = _common_length(columns)
    n_columns = len(columns)
    rows_per_statement = _rows_per_statement(connection, n_columns)
    full_statement = statement(rows_per_statement)
    width = rows_per_statement * n_columns
    for start in range(0, n_rows, BATCH_ROWS):
        stop = start + BATCH_ROWS
        # tolist() turns numpy scalars into Python ones, which sqlite3 binds.
        chunk = [values[start:stop].tolist() for values in columns.values()]
        parameters = _row_major(chunk)
        n_full = len(parameters) // width * width
        cursor.executemany(
            full_statement,
            (parameters[i : i + width] for i in range(0, n_full, width)),
        )
        if n_full < len(parameters):
            n_left = (len(parameters) - n_full) // n_columns
            cursor.execute(statement(n_left), parameters[n_full:])
    cursor.close()


def _rows_per_statement(connection: Connection, n_columns: int) -> int:
    driver: Any = connection.connection.driver_connection
    max_parameters = driver.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    return max(1, min(ROWS_PER_STATEMENT, max_parameters // n_columns))


def _row_major(chunk: Sequence[list[Any]]) -> list[Any]:
    """Interleave equal-length column lists into one list, row after row."""
    n_columns = len(chunk)
    flat: list[Any] = [None] * (len(chunk[0]) * n_columns)
    for index, values in enumerate(chunk):
        flat[index::n_columns] = values
    return flat


def _merge_via_temp_table(
    connection: Connection,
    table: str,
    columns: Columns,
    key: Sequence[str],
    update: Sequence[str],
    stamp: ChangeStamp | None,
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
    compared = list(dict.fromkeys([*update, *(stamp.watched if stamp else ())]))
    if compared:
        assignments = [f"{name} = s.{name}" for name in update]
        if stamp is not None:
            changed = " OR ".join(
                f"t.{name} IS DISTINCT FROM s.{name}" for name in stamp.watched
            )
            assignments.append(
                f"{stamp.column} = CASE WHEN {changed} THEN CURRENT_TIMESTAMP "
                f"ELSE t.{stamp.column} END"
            )
        targets = ", ".join(f"t.{name}" for name in compared)
        sources = ", ".join(f"s.{name}" for name in compared)
        cursor.execute(
            f"UPDATE {table} AS t SET {', '.join(assignments)} FROM {staging} AS s "
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
    types, not_null = _column_types(connection, types_of or table)
    wire = [BINARY_TYPES.get(types[name]) for name in columns]
    names = ", ".join(columns)
    cursor = _raw_cursor(connection)
    if all(dtype is not None for dtype in wire):
        with cursor.copy(f"COPY {table} ({names}) FROM STDIN (FORMAT binary)") as copy:
            for chunk in _binary_chunks(columns, wire):  # type: ignore[arg-type]
                copy.write(chunk)
    else:
        # COPY reads an unquoted empty CSV field as NULL, and pandas writes ""
        # unquoted, so an empty string would violate a NOT NULL text column
        # (such as movies.genres). FORCE_NOT_NULL reads it as "" there.
        options = "FORMAT csv"
        forced = [
            name
            for name, dtype in zip(columns, wire, strict=True)
            if dtype is None and name in not_null
        ]
        if forced:
            options += f", FORCE_NOT_NULL ({', '.join(forced)})"
        with cursor.copy(f"COPY {table} ({names}) FROM STDIN ({options})") as copy:
            for text_chunk in _csv_chunks(columns):
                copy.write(text_chunk)
    cursor.close()


def _column_types(
    connection: Connection, table: str
) -> tuple[dict[str, str], set[str]]:
    """Return each column's PostgreSQL type name, and the NOT NULL columns."""
    cursor = _raw_cursor(connection)
    cursor.execute(
        "SELECT attname, format_type(atttypid, NULL), attnotnull FROM pg_attribute "
        "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
        (table,),
    )
    rows = cursor.fetchall()
    cursor.close()
    types = {str(name): str(kind) for name, kind, _ in rows}
    not_null = {str(name) for name, _, required in rows if required}
    return types, not_null


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
    # Imported here: only PostgreSQL's text COPY needs pandas, and importing it
    # costs every run about 0.3 s.
    import pandas as pd

    frame = pd.DataFrame(dict(columns))
    for start in range(0, len(frame), BATCH_ROWS):
        buffer = io.StringIO()
        frame.iloc[start : start + BATCH_ROWS].to_csv(buffer, header=False, index=False)
        yield buffer.getvalue()


def _fetch_all(
    connection: Connection, query: str, names: Sequence[str]
) -> dict[str, np.ndarray]:
    # Values stream from the driver's cursor straight into one float64 array,
    # skipping per-row Python objects; ids up to 2**53 stay exact.
    cursor = _raw_cursor(connection)
    cursor.execute(query)
    flat = np.fromiter(itertools.chain.from_iterable(cursor), dtype=np.float64)
    cursor.close()
    table = flat.reshape(-1, len(names))
    return {name: table[:, i] for i, name in enumerate(names)}


def _copy_out(
    connection: Connection, query: str, names: Sequence[str]
) -> dict[str, np.ndarray]:
    import pandas as pd

    cursor = _raw_cursor(connection)
    buffer = io.BytesIO()
    with cursor.copy(f"COPY ({query}) TO STDOUT (FORMAT csv)") as copy:
        for chunk in copy:
            buffer.write(chunk)
    cursor.close()
    buffer.seek(0)
    if buffer.getbuffer().nbytes == 0:
        return {name: np.empty(0) for name in names}
    frame = pd.read_csv(buffer, header=None, names=list(names))
    return {name: frame[name].to_numpy() for name in names}
