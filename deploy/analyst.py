"""The read-only analyst role on PostgreSQL: SELECT on schema ``reporting`` and nothing else.

The SQL lives in ``deploy/sql/analyst_role.sql`` (for psql, with variables ``analyst_role`` and
``engine_role``); this module runs that same file through psycopg, so there is one definition of
what the role may do. Roles are cluster-wide, grants are per database: run it once per database.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

import psycopg
from psycopg import sql

class AnalystRoleError(Exception):
    """PostgreSQL refused to create or fix the role (the driver's error, translated here)."""


# Installed as package data of ``deploy`` (pyproject), so it is found outside a checkout too.
SQL_FILE = Path(str(resources.files("deploy").joinpath("sql", "analyst_role.sql")))
DEFAULT_ROLE = "lifecycle_analyst"
_VARIABLES = ("analyst_role", "engine_role")


def analyst_role_script(role: str = DEFAULT_ROLE, engine_role: str | None = None) -> str:
    """The SQL file with its psql variables filled in, psql's meta-commands dropped.

    Only ``:'name'`` (a quoted literal, as psql writes it) is used by the file for its variables.
    """
    if not role:
        raise ValueError("the analyst role name must not be empty")
    values = {"analyst_role": role, "engine_role": engine_role or ""}
    try:
        source = SQL_FILE.read_text()
    except OSError as e:
        raise FileNotFoundError(f"cannot read {SQL_FILE} (the deploy/sql folder must be installed): {e}") from e
    lines = [line for line in source.splitlines() if not line.lstrip().startswith("\\")]
    text = "\n".join(lines) + "\n"

    def literal(match: re.Match[str]) -> str:
        return sql.Literal(values[match.group(1)]).as_string(None)

    return re.sub(r":'(%s)'" % "|".join(_VARIABLES), literal, text)


def grant_analyst_role(
    database_url: str,
    role: str = DEFAULT_ROLE,
    login: str | None = None,
    password: str | None = None,
    *,
    engine_role: str | None = None,
) -> None:
    """Create or fix the NOLOGIN group ``role`` in the database of ``database_url`` (idempotent).

    ``login``: also create (or update) a LOGIN user that is a member of it, read-only by default
    and with ``search_path = reporting``; ``password`` sets its password (none: unchanged, or no
    password for a new user). An existing superuser or one with other write-enabling attributes
    is refused rather than demoted. ``engine_role``: the role the engine connects as (default:
    the database owner). Connect as a superuser (or a role with CREATEROLE that is a member of
    the engine's role). Raises ``AnalystRoleError`` on failure, ``ValueError`` on a bad argument.
    """
    if login is not None and (not login or login == role):
        raise ValueError("the login must be a non-empty name other than the group role")
    if password is not None and login is None:
        raise ValueError("a password needs a login")
    try:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(analyst_role_script(role, engine_role))  # BEGIN ... COMMIT inside
            if login is not None:
                _grant_login(conn, role, login, password)
    except psycopg.Error as e:
        raise AnalystRoleError(str(e)) from e


def _grant_login(conn: psycopg.Connection, role: str, login: str, password: str | None) -> None:
    with conn.transaction():
        found = conn.execute(
            "SELECT rolsuper OR rolcreaterole OR rolcreatedb OR rolreplication OR rolbypassrls"
            " FROM pg_roles WHERE rolname = %s",
            (login,),
        ).fetchone()
        if found is not None and found[0]:
            raise ValueError(f"role {login!r} exists with superuser or other privileged attributes")
        others = [r for (r,) in conn.execute(
            "SELECT pg_get_userbyid(m.roleid) FROM pg_auth_members m JOIN pg_roles u ON u.oid = m.member"
            " WHERE u.rolname = %s AND pg_get_userbyid(m.roleid) <> %s ORDER BY 1",
            (login, role),
        )]
        if others:
            raise ValueError(f"role {login!r} is also a member of {', '.join(others)}: it would not be read-only")
        name = sql.Identifier(login)
        verb = sql.SQL("CREATE" if found is None else "ALTER")
        secret = sql.SQL(" PASSWORD {}").format(sql.Literal(password)) if password is not None else sql.SQL("")
        conn.execute(sql.SQL("{} ROLE {} LOGIN{}").format(verb, name, secret))
        conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(role), name))
        conn.execute(sql.SQL("ALTER ROLE {} SET default_transaction_read_only = on").format(name))
        conn.execute(sql.SQL("ALTER ROLE {} SET search_path = reporting").format(name))
