"""Many new rows into one table: one binary COPY on PostgreSQL, one executemany elsewhere.

psycopg sends an executemany as a pipeline of one INSERT per row; COPY streams the rows in one
statement, which is what makes intake and results cheaper on PostgreSQL (BENCHMARKS.md, "The
fixed cost per scan"). Only for plain inserts of rows that cannot exist yet: COPY has no
ON CONFLICT, so a duplicate key fails the whole transaction instead of being skipped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ledger.statements import upsert_into

_BINARY_TYPES = (  # most specific first: SmallInteger is an Integer
    (sa.SmallInteger, "int2"),
    (sa.Integer, "int4"),
    (sa.Float, "float8"),
    (sa.Boolean, "bool"),
    (sa.LargeBinary, "bytea"),
    (sa.String, "text"),
)


def insert_rows(connection: Connection, table: sa.Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert `rows` (dicts with the same keys) into `table` inside the connection's transaction."""
    if not rows:
        return
    if connection.dialect.name != "postgresql":
        connection.execute(table.insert(), list(rows))
        return
    columns = list(rows[0])
    quote = connection.dialect.identifier_preparer.quote
    names = ", ".join(quote(name) for name in columns)
    statement = f"COPY {quote(table.name)} ({names}) FROM STDIN (FORMAT BINARY)"
    driver = connection.connection.driver_connection  # psycopg, in this transaction
    with driver.cursor() as cursor, cursor.copy(statement) as copy:
        copy.set_types([binary_type(table.c[name].type) for name in columns])
        for row in rows:
            copy.write_row([row[name] for name in columns])


def binary_type(column_type: sa.types.TypeEngine) -> str:
    """The PostgreSQL type a binary COPY writes for a column of `column_type`."""
    if isinstance(column_type, sa.DateTime):
        return "timestamptz" if column_type.timezone else "timestamp"
    for kind, name in _BINARY_TYPES:
        if isinstance(column_type, kind):
            return name
    raise TypeError(f"no binary COPY type for {column_type!r}")


def _unnested(table: sa.Table, rows: Sequence[Mapping[str, Any]]) -> sa.Subquery:
    """PostgreSQL: the rows as one array parameter per column, unnested side by side."""
    from sqlalchemy.dialects.postgresql import ARRAY

    columns = [
        sa.func.unnest(
            sa.bindparam(f"bulk_{name}", [row[name] for row in rows], ARRAY(table.c[name].type))
        ).label(name)
        for name in rows[0]
    ]
    return sa.select(*columns).subquery("bulk")


def insert_new_rows(
    connection: Connection, table: sa.Table, rows: Sequence[Mapping[str, Any]], unique: str
) -> None:
    """Insert `rows`, skipping those whose `unique` column value is already there: one
    INSERT ... SELECT FROM unnest(...) ON CONFLICT DO NOTHING on PostgreSQL."""
    if not rows:
        return
    insert = upsert_into(connection, table)
    if connection.dialect.name != "postgresql":
        connection.execute(insert.on_conflict_do_nothing(index_elements=[unique]), list(rows))
        return
    source = _unnested(table, rows)
    statement = insert.from_select(list(rows[0]), sa.select(*source.c))
    connection.execute(statement.on_conflict_do_nothing(index_elements=[unique]))


def update_rows(
    connection: Connection,
    table: sa.Table,
    key: str,
    rows: Sequence[Mapping[str, Any]],
    same_for_all: Mapping[str, Any] | None = None,
) -> None:
    """Set each row's values on the table row whose `key` matches, plus `same_for_all`
    (values or column expressions): one UPDATE ... FROM unnest(...) on PostgreSQL."""
    if not rows:
        return
    same = dict(same_for_all or {})
    names = [name for name in rows[0] if name != key]
    if connection.dialect.name != "postgresql":
        values = {name: sa.bindparam(f"b_{name}") for name in names}
        statement = table.update().where(table.c[key] == sa.bindparam(f"b_{key}"))
        connection.execute(
            statement.values({**values, **same}),
            [{f"b_{name}": value for name, value in row.items()} for row in rows],
        )
        return
    source = _unnested(table, rows)
    statement = table.update().where(table.c[key] == source.c[key])
    connection.execute(statement.values({**{name: source.c[name] for name in names}, **same}))
