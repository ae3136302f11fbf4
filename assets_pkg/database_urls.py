"""Database URLs (Dagster's instance, MLflow's tracking store): which kind, shown without a password,
checked for reachability, and a PostgreSQL advisory lock.

A URL may carry a password (`postgresql://user:password@host/db`); anything printed or logged goes
through `masked` first. `check_reachable` answers in one line (`DatabaseUnavailable`) naming the
host, never the password. Connections go through SQLAlchemy, as Dagster's and MLflow's do: the driver is
the URL's (`postgresql+psycopg2://`; SQLAlchemy 2.1 opens a bare `postgresql://` with psycopg 3).
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from typing import Iterator
from urllib.parse import unquote, urlsplit

MASK = "***"
POSTGRES_SCHEMES = ("postgresql", "postgres")  # with or without a driver: postgresql+psycopg2://
CONNECT_TIMEOUT_S = 5  # libpq connect_timeout (psycopg2 and psycopg 3)
_USERINFO_PASSWORD = re.compile(r"(://[^/?#@\s:]*:)[^/?#@\s]*(@)")
_QUERY_PASSWORD = re.compile(r"(?i)([?&]password=)[^&#\s]*")


class DatabaseUnavailable(Exception):
    """One line: which database (by host, port and name), and why it cannot be used."""


def masked(url: str) -> str:
    """The URL with its password (user:password@, or ?password=) replaced by ***; other text as it is."""
    return _QUERY_PASSWORD.sub(r"\g<1>" + MASK, _USERINFO_PASSWORD.sub(r"\g<1>" + MASK + r"\g<2>", url))


def is_postgres(url: str) -> bool:
    return url.split("://", 1)[0].split("+", 1)[0].lower() in POSTGRES_SCHEMES if "://" in url else False


def is_sqlite(url: str) -> bool:
    return url.split(":", 1)[0].split("+", 1)[0].lower() == "sqlite"


def where(url: str) -> str:
    """host:port/database of a PostgreSQL URL, for messages (no user, no password)."""
    parts = urlsplit(url)
    host = parts.hostname or _query_value(parts.query, "host") or "localhost (unix socket)"
    port = parts.port or _query_value(parts.query, "port") or 5432
    return f"{host}:{port}/{parts.path.lstrip('/') or '(default database)'}"


def check_reachable(url: str, what: str) -> None:
    """Load the URL's driver and connect once (CONNECT_TIMEOUT_S), as Dagster and MLflow will (SQLAlchemy);
    raise `DatabaseUnavailable` saying `what`, where and why."""
    import sqlalchemy

    try:
        sqlalchemy.engine.make_url(url).get_dialect().import_dbapi()
    except sqlalchemy.exc.ArgumentError:
        raise DatabaseUnavailable(f"{what} is not a database URL: expected "
                                  f"postgresql+psycopg2://user:password@host:5432/database") from None
    except ImportError as err:
        # SQLAlchemy 2.1 connects a bare postgresql:// with psycopg (3); the `scale` extra installs psycopg2.
        raise DatabaseUnavailable(f"{what}: SQLAlchemy {sqlalchemy.__version__} opens {url.split('://')[0]}:// URLs "
                                  f"with the {err.name} module, which is not installed: write the URL as "
                                  f"postgresql+psycopg2://... (psycopg2 comes with adrag[scale])") from None
    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool,
                                      connect_args={"connect_timeout": CONNECT_TIMEOUT_S})
    try:
        engine.connect().close()
    except sqlalchemy.exc.DBAPIError as err:
        reason = " ".join(str(err.orig).split()) or type(err.orig).__name__
        password = urlsplit(url).password
        if password:
            reason = reason.replace(unquote(password), MASK).replace(password, MASK)
        raise DatabaseUnavailable(f"cannot connect to {what} at {where(url)}: {reason}") from None
    finally:
        engine.dispose()


@contextmanager
def advisory_lock(url: str, key: int) -> Iterator[None]:
    """Hold PostgreSQL's session advisory lock `key` on the URL's database: one holder at a time,
    on every machine that uses the database (a file lock holds only on one machine)."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"), {"key": key})
            yield  # closing the connection ends the session, and the lock with it
    finally:
        engine.dispose()


def _query_value(query: str, name: str) -> str | None:
    for item in query.split("&"):
        key, _, value = item.partition("=")
        if key == name and value:
            return unquote(value)
    return None
