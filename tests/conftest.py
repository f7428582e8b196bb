# Shared fixtures. PostgreSQL (tests/pgserver.py): `postgres` (one throwaway server per session),
# `pg_url` (a fresh database on it), `private_postgres` (a server of the test's own, to stop and restart).
from pgserver import pg_url, postgres, private_postgres  # noqa: F401
