"""Turn Mastodon's ``db/schema.rb`` into PostgreSQL DDL for the tables mastodon-s3-sync reads.

    python -m mastodon_s3_sync_demo.schema.generate [SCHEMA_RB] [-o OUT]

SCHEMA_RB defaults to the vendored excerpt ``schema.rb`` beside this file; a full
Mastodon ``db/schema.rb`` works too (only the tables in ``TABLES`` are used). OUT
defaults to ``mastodon_schema.sql`` beside this file. ``make schema`` runs it
(``make schema SCHEMA_RB=/path/to/mastodon/db/schema.rb``).

This is a small parser for the subset of the Rails schema DSL those tables use:
``create_table`` with its ``id:``/``default:``/``primary_key:`` options, ``t.<type>``
columns (``null:``, ``default:``, ``array:``, ``limit:``, ``precision:``, ``scale:``)
and ``t.index`` (column list or SQL expression, ``name:``, ``unique:``, ``where:``,
``order:``, ``opclass:``, ``using:``, ``include:``). Anything else in a selected table
is an error rather than a silent guess. Foreign keys are never emitted: the fake
instance inserts rows in any order.

Like ``bin/rails db:schema:load``, tables whose id defaults to ``timestamp_id('<table>')``
get Mastodon's ``timestamp_id(text)`` function (``lib/mastodon/snowflake.rb``,
``define_timestamp_id``) and a ``<table>_id_seq`` sequence it draws from
(``ensure_id_sequences_exist``); other tables get a bigserial ``id``.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mastodon_s3_sync_demo.fake_instance.tables import FAKE_TABLES

HERE = Path(__file__).resolve().parent
DEFAULT_SCHEMA_RB = HERE / "schema.rb"
DEFAULT_OUT = HERE / "mastodon_schema.sql"
REGENERATE = "make schema  (or: PYTHONPATH=demo python -m mastodon_s3_sync_demo.schema.generate [SCHEMA_RB] [-o OUT])"

TABLES = tuple(name for fake in FAKE_TABLES.values() for name in fake.schema_tables)
"""The tables the product reads (each fake table's ``schema_tables``), in the order they are emitted."""

# Mastodon salts the hash with SecureRandom.hex(16), chosen once per installation when the
# function is created. A fixed value keeps the generated file reproducible.
TIMESTAMP_ID_SALT = "6d6173746f646f6e2d73332d73796e63"

TIMESTAMP_ID_SQL = """\
-- Mastodon's snowflake ids: lib/mastodon/snowflake.rb, Mastodon::Snowflake.define_timestamp_id
-- (mastodon/mastodon, read at commit c2032f1a183324e9c5105872d714f7bfc770622a; the stored copy of that
-- file at the schema's commit was not available). The body is Mastodon's, except the salt: Mastodon
-- interpolates SecureRandom.hex(16) once per installation, this file has a fixed one.
CREATE OR REPLACE FUNCTION timestamp_id(table_name text)
RETURNS bigint AS
$$
  DECLARE
    time_part bigint;
    sequence_base bigint;
    tail bigint;
  BEGIN
    time_part := (
      -- Get the time in milliseconds
      ((date_part('epoch', now()) * 1000))::bigint
      -- And shift it over two bytes
      << 16);

    sequence_base := (
      'x' ||
      -- Take the first two bytes (four hex characters)
      substr(
        -- Of the MD5 hash of the data we documented
        md5(table_name ||
          '{salt}' ||
          time_part::text
        ),
        1, 4
      )
    -- And turn it into a bigint
    )::bit(16)::bigint;

    -- Finally, add our sequence number to our base, and chop
    -- it to the last two bytes
    tail := (
      (sequence_base + nextval(table_name || '_id_seq'))
      & 65535);

    -- Return the time part and the sequence part. OR appears
    -- faster here than addition, but they're equivalent:
    -- time_part has no trailing two bytes, and tail is only
    -- the last two bytes.
    RETURN time_part | tail;
  END
$$ LANGUAGE plpgsql VOLATILE;
"""


class SchemaError(ValueError):
    """The schema.rb uses something this parser does not understand."""


# --------------------------------------------------------------------------------------
# Ruby literals: the values of the DSL's arguments


@dataclass(frozen=True)
class Symbol:
    """A Ruby symbol, ``:desc``."""

    name: str


@dataclass(frozen=True)
class SqlExpression:
    """A lambda default, ``-> { "timestamp_id('accounts'::text)" }``: SQL used verbatim."""

    sql: str


_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<string>"(?:[^"\\]|\\.)*")
  | (?P<label>[A-Za-z_]\w*:)(?!:)   # a keyword argument or hash key, `null:`
  | (?P<symbol>:[A-Za-z_]\w*[?!]?)
  | (?P<number>-?\d[\d_]*(?:\.\d+)?)
  | (?P<word>[A-Za-z_]\w*)
  | (?P<punct>->|=>|[\[\]{}(),|])
    """,
    re.VERBOSE,
)
_ESCAPES = {'"': '"', "\\": "\\", "n": "\n", "t": "\t", "#": "#"}


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens, position = [], 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if not match:
            raise SchemaError(f"cannot read {text[position:]!r}")
        position = match.end()
        if match.lastgroup != "space":
            tokens.append((match.lastgroup, match.group()))
    return tokens


def _unquote(literal: str) -> str:
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), literal[1:-1])


class _Arguments:
    """Reads ``"name", key: value, ...`` into positional values and keyword arguments."""

    def __init__(self, text: str) -> None:
        self.tokens = _tokenize(text)
        self.position = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def take(self, expected: str | None = None) -> tuple[str, str]:
        token = self.peek()
        if token is None or (expected is not None and token[1] != expected):
            raise SchemaError(f"expected {expected or 'a value'}, found {token and token[1]!r}")
        self.position += 1
        return token

    def parse(self) -> tuple[list[Any], dict[str, Any]]:
        positional: list[Any] = []
        keywords: dict[str, Any] = {}
        while self.peek() is not None:
            kind, text = self.peek()
            if kind == "label":
                self.take()
                keywords[text[:-1]] = self.value()
            else:
                positional.append(self.value())
            if self.peek() is not None:
                self.take(",")
        return positional, keywords

    def value(self) -> Any:
        kind, text = self.take()
        if kind == "string":
            return _unquote(text)
        if kind == "symbol":
            return Symbol(text[1:])
        if kind == "number":
            number = text.replace("_", "")
            return float(number) if "." in number else int(number)
        if kind == "word" and text in ("true", "false", "nil"):
            return {"true": True, "false": False, "nil": None}[text]
        if text == "[":
            items = []
            while self.peek() and self.peek()[1] != "]":
                items.append(self.value())
                if self.peek() and self.peek()[1] == ",":
                    self.take(",")
            self.take("]")
            return items
        if text == "{":
            pairs = {}
            while self.peek() and self.peek()[1] != "}":
                key_kind, key = self.take()
                if key_kind == "label":
                    pairs[key[:-1]] = self.value()
                else:  # "key" => value
                    self.take("=>")
                    pairs[_unquote(key) if key_kind == "string" else key] = self.value()
                if self.peek() and self.peek()[1] == ",":
                    self.take(",")
            self.take("}")
            return pairs
        if text == "->":
            self.take("{")
            kind, sql = self.take()
            if kind != "string":
                raise SchemaError(f"a lambda default must hold one SQL string, found {sql!r}")
            self.take("}")
            return SqlExpression(_unquote(sql))
        raise SchemaError(f"unsupported Ruby value {text!r}")


def parse_arguments(text: str) -> tuple[list[Any], dict[str, Any]]:
    return _Arguments(text).parse()


# --------------------------------------------------------------------------------------
# The schema: tables, columns, indexes


@dataclass
class Column:
    name: str
    type: str
    options: dict[str, Any]


@dataclass
class Index:
    columns: list[str] | str
    """Column names, or one SQL expression string."""
    options: dict[str, Any]


@dataclass
class Table:
    name: str
    options: dict[str, Any]
    columns: list[Column] = field(default_factory=list)
    indexes: list[Index] = field(default_factory=list)


@dataclass
class Schema:
    version: str | None
    tables: dict[str, Table]
    source_notes: dict[str, str]
    """``repository:``, ``commit:`` ... from the input's leading comment lines, when it records them."""


_DEFINE = re.compile(r"^ActiveRecord::Schema(?:\[[\d.]+\])?\.define\(version:\s*([\d_]+)\)\s+do\s*$")
_CREATE_TABLE = re.compile(r"^(\s*)create_table\s+(.*?)\s+do\s+\|(\w+)\|\s*$")
_SOURCE_NOTE = re.compile(r"^#\s+(repository|path|commit|schema version):\s+(\S+)")


def parse_schema(text: str, tables: tuple[str, ...] = TABLES) -> Schema:
    """The ``create_table`` blocks named in ``tables``; everything else in the file is skipped."""
    version = None
    notes: dict[str, str] = {}
    found: dict[str, Table] = {}
    lines = text.splitlines()
    number = 0
    while number < len(lines):
        line = lines[number]
        number += 1
        if line.startswith("#") and (note := _SOURCE_NOTE.match(line)):
            notes.setdefault(note.group(1), note.group(2))
        if define := _DEFINE.match(line):
            version = define.group(1)
            continue
        start = _CREATE_TABLE.match(line)
        if not start:
            continue
        indent, arguments, block_variable = start.groups()
        positional, options = parse_arguments(arguments)
        name = positional[0]
        body = []
        while number < len(lines) and lines[number] != f"{indent}end":
            body.append(lines[number])
            number += 1
        if number == len(lines):
            raise SchemaError(f'create_table "{name}" has no end')
        number += 1
        if name in tables:
            found[name] = _parse_table(name, options, body, block_variable)
    missing = [name for name in tables if name not in found]
    if missing:
        raise SchemaError(f"tables not found in the schema: {', '.join(missing)}")
    return Schema(version, {name: found[name] for name in tables}, notes)


def _parse_table(name: str, options: dict[str, Any], body: list[str], t: str) -> Table:
    table = Table(name, options)
    for line in body:
        statement = line.strip()
        if not statement or statement.startswith("#"):
            continue
        call = re.match(rf"^{t}\.(\w+)\s+(.*)$", statement)
        if not call:
            raise SchemaError(f"{name}: cannot read {statement!r}")
        method, rest = call.groups()
        positional, keywords = parse_arguments(rest)
        if method == "index":
            table.indexes.append(Index(positional[0], keywords))
        else:
            for column_name in positional:  # t.string "a", "b" declares two columns
                table.columns.append(Column(column_name, method, keywords))
    return table


# --------------------------------------------------------------------------------------
# PostgreSQL DDL

_TYPES = {
    "string": "character varying",
    "text": "text",
    "integer": "integer",
    "bigint": "bigint",
    "boolean": "boolean",
    "jsonb": "jsonb",
    "json": "json",
    "inet": "inet",
    "float": "double precision",
    "decimal": "numeric",
    "binary": "bytea",
    "date": "date",
    "datetime": "timestamp",
    "timestamp": "timestamp",
}
_INTEGER_LIMITS = {2: "smallint", 4: "integer", 8: "bigint"}
_COLUMN_OPTIONS = {"null", "default", "array", "limit", "precision", "scale"}
_INDEX_OPTIONS = {"name", "unique", "where", "order", "opclass", "using", "include"}
# PostgreSQL's reserved key words (those that cannot be a column name unquoted).
_RESERVED = frozenset(
    """all analyse analyze and any array as asc asymmetric authorization binary both case cast check
    collate collation column concurrently constraint create cross current_catalog current_date current_role
    current_schema current_time current_timestamp current_user default deferrable desc distinct do else end
    except false fetch for foreign freeze from full grant group having ilike in initially inner intersect into
    is isnull join lateral leading left like limit localtime localtimestamp natural not notnull null offset on
    only or order outer overlaps placing primary references returning right select session_user similar some
    symmetric system_user table tablesample then to trailing true union unique user using variadic verbose when
    where window with""".split()
)


def quote_ident(name: str) -> str:
    if re.fullmatch(r"[a-z_][a-z0-9_]*", name) and name not in _RESERVED:
        return name
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def column_type(column: Column) -> str:
    options = column.options
    unknown = set(options) - _COLUMN_OPTIONS
    if unknown:
        raise SchemaError(f"column {column.name}: unsupported option(s) {sorted(unknown)}")
    if column.type not in _TYPES:
        raise SchemaError(f"column {column.name}: unsupported type t.{column.type}")
    sql_type = _TYPES[column.type]
    limit = options.get("limit")
    if column.type == "string" and limit:
        sql_type = f"character varying({limit})"
    elif column.type == "integer" and limit:
        sql_type = _INTEGER_LIMITS[limit]
    elif column.type == "decimal" and "precision" in options:
        scale = options.get("scale")
        sql_type = f"numeric({options['precision']}{'' if scale is None else f', {scale}'})"
    elif column.type in ("datetime", "timestamp"):
        # Rails 7+: a datetime without `precision:` is timestamp(6); `precision: nil` is the bare type.
        precision = options.get("precision", 6)
        sql_type = "timestamp" + ("" if precision is None else f"({precision})") + " without time zone"
    if options.get("array"):
        sql_type += "[]"
    return sql_type


def default_sql(column: Column) -> str | None:
    if "default" not in column.options:
        return None
    value = column.options["default"]
    if value is None:
        return "NULL"
    if isinstance(value, SqlExpression):
        return value.sql
    if column.type in ("json", "jsonb"):
        return f"{quote_literal(json.dumps(value))}::{column.type}"
    if isinstance(value, list):
        if not column.options.get("array"):
            raise SchemaError(f"column {column.name}: an array default on a non-array column")
        items = ",".join('"' + str(item).replace("\\", "\\\\").replace('"', '\\"') + '"' for item in value)
        return quote_literal("{" + items + "}")
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return quote_literal(value)
    raise SchemaError(f"column {column.name}: unsupported default {value!r}")


def column_sql(column: Column) -> str:
    parts = [quote_ident(column.name), column_type(column)]
    default = default_sql(column)
    if default is not None:
        parts.append(f"DEFAULT {default}")
    if column.options.get("null") is False:
        parts.append("NOT NULL")
    return " ".join(parts)


def _timestamp_id_table(table: Table) -> str | None:
    """``accounts`` for ``default: -> { "timestamp_id('accounts'::text)" }``."""
    default = table.options.get("default")
    if isinstance(default, SqlExpression):
        match = re.match(r"timestamp_id\('(\w+)'", default.sql)
        return match.group(1) if match else None
    return None


def table_sql(table: Table) -> list[str]:
    """CREATE SEQUENCE / TABLE / INDEX statements for one table."""
    options = table.options
    unknown = set(options) - {"id", "default", "primary_key", "force"}
    if unknown:
        raise SchemaError(f"table {table.name}: unsupported option(s) {sorted(unknown)}")
    statements: list[str] = []
    lines: list[str] = []
    primary_key = options.get("primary_key", "id")
    id_type = options.get("id", Symbol("bigint"))
    owned_sequence = None
    if isinstance(primary_key, list):  # a composite key over declared columns, no id column
        key_columns = primary_key
    elif id_type is False:
        key_columns = []
    else:
        key_columns = [primary_key]
        if not isinstance(id_type, Symbol) or id_type.name not in ("bigint", "integer", "primary_key"):
            raise SchemaError(f"table {table.name}: unsupported id: {id_type!r}")
        sql_type = "integer" if id_type.name == "integer" else "bigint"
        if "default" in options:
            sequence = _timestamp_id_table(table)
            if sequence:  # Mastodon::Snowflake.ensure_id_sequences_exist: timestamp_id() draws from it
                statements.append(f"CREATE SEQUENCE {quote_ident(sequence + '_id_seq')};")
            default = options["default"]
            if not isinstance(default, SqlExpression):
                raise SchemaError(f"table {table.name}: unsupported id default {default!r}")
            lines.append(f"{quote_ident(primary_key)} {sql_type} DEFAULT {default.sql} NOT NULL")
        else:  # serial: the sequence the id column owns
            owned_sequence = f"{table.name}_{primary_key}_seq"
            statements.append(f"CREATE SEQUENCE {quote_ident(owned_sequence)};")
            lines.append(
                f"{quote_ident(primary_key)} {sql_type} DEFAULT nextval({quote_literal(owned_sequence)}::regclass)"
                " NOT NULL"
            )
    lines += [column_sql(column) for column in table.columns]
    if key_columns:
        lines.append(
            f"CONSTRAINT {quote_ident(table.name + '_pkey')} PRIMARY KEY ({', '.join(map(quote_ident, key_columns))})"
        )
    statements.append(f"CREATE TABLE {quote_ident(table.name)} (\n    " + ",\n    ".join(lines) + "\n);")
    if owned_sequence:
        statements.append(
            f"ALTER SEQUENCE {quote_ident(owned_sequence)} OWNED BY {quote_ident(table.name)}.{quote_ident(primary_key)};"
        )
    statements += [index_sql(table.name, index) for index in table.indexes]
    return statements


def index_sql(table: str, index: Index) -> str:
    options = index.options
    unknown = set(options) - _INDEX_OPTIONS
    if unknown:
        raise SchemaError(f"index on {table}: unsupported option(s) {sorted(unknown)}")
    if "name" not in options:
        raise SchemaError(f"index on {table}: no name")
    if isinstance(index.columns, str):
        keys = index.columns  # an SQL expression, verbatim
    else:
        order = options.get("order", {})
        opclass = options.get("opclass", {})
        parts = []
        for column in index.columns:
            part = quote_ident(column)
            column_opclass = opclass.get(column) if isinstance(opclass, dict) else opclass
            if column_opclass:
                part += f" {_word(column_opclass)}"
            column_order = order.get(column) if isinstance(order, dict) else order
            if column_order:
                part += f" {_word(column_order).upper()}"
            parts.append(part)
        keys = ", ".join(parts)
    unique = "UNIQUE " if options.get("unique") else ""
    using = _word(options.get("using", Symbol("btree")))
    statement = f"CREATE {unique}INDEX {quote_ident(options['name'])} ON {quote_ident(table)} USING {using} ({keys})"
    if options.get("include"):
        statement += f" INCLUDE ({', '.join(map(quote_ident, options['include']))})"
    if options.get("where"):
        statement += f" WHERE {options['where']}"
    return statement + ";"


def _word(value: Any) -> str:
    return value.name if isinstance(value, Symbol) else str(value)


# --------------------------------------------------------------------------------------
# The output file


REPOSITORY_ROOT = HERE.parents[2]


def _display(path: Path) -> str:
    """Paths inside this repository relative to its root, so the output does not depend on the cwd."""
    try:
        return str(path.resolve().relative_to(REPOSITORY_ROOT))
    except ValueError:
        return str(path)


def generate(text: str, source_name: str, commit: str | None = None) -> str:
    schema = parse_schema(text)
    notes = dict(schema.source_notes)
    if commit:
        notes["commit"] = commit
    header = [
        "-- Mastodon's PostgreSQL schema for the tables mastodon-s3-sync reads. GENERATED: do not edit.",
        "--",
        f"-- Generated by mastodon_s3_sync_demo/schema/generate.py from {source_name}",
        f"--   Mastodon repository: {notes.get('repository', 'mastodon/mastodon')}",
        f"--   path:                {notes.get('path', 'db/schema.rb')}",
        f"--   commit:              {notes.get('commit', 'unknown (not recorded in the input)')}",
        f"--   schema version:      {schema.version or 'unknown'}",
        f"-- Tables: {', '.join(schema.tables)}.",
        "-- Columns, types, defaults, NOT NULL and indexes as in schema.rb; no foreign keys (rows may be",
        "-- inserted in any order). Run on a fresh database.",
        "--",
        f"-- Regenerate: {REGENERATE}",
        "",
    ]
    statements: list[str] = []
    if any(_timestamp_id_table(table) for table in schema.tables.values()):
        statements.append(TIMESTAMP_ID_SQL.replace("{salt}", TIMESTAMP_ID_SALT).rstrip("\n"))
    for table in schema.tables.values():
        statements.append(f"-- {table.name}\n" + "\n".join(table_sql(table)))
    return "\n".join(header) + "\n" + "\n\n".join(statements) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("schema_rb", nargs="?", type=Path, default=DEFAULT_SCHEMA_RB, help="a Mastodon db/schema.rb")
    parser.add_argument("-o", "--out", type=Path, default=DEFAULT_OUT, help="the SQL file to write")
    parser.add_argument(
        "--commit", help="the Mastodon commit SCHEMA_RB comes from, for the header (the excerpt records its own)"
    )
    args = parser.parse_args(argv)
    try:
        sql = generate(args.schema_rb.read_text(), _display(args.schema_rb), args.commit)
    except SchemaError as error:
        print(f"{args.schema_rb}: {error}", file=sys.stderr)
        return 1
    args.out.write_text(sql)
    print(f"wrote {_display(args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
