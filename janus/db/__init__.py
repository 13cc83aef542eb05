"""Everything that talks to Postgres: the pool, named SQL, the retry loop, error translation."""
