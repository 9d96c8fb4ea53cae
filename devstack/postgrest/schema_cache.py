"""PostgREST's schema cache, kept per function name and checked inside every call.

Reading the overloads of a function from pg_catalog is the most expensive statement of a call, so
it is kept. PostgREST reloads its cache when told (`NOTIFY pgrst, 'reload schema'`, sent on
Supabase by a DDL event trigger), which leaves a window where a new function is not yet callable;
tests and migrations here create and replace functions while the server runs and call them at
once. So each cached entry carries its catalog version (see `catalog.version_sql`), the call's
first statement reads the current version in the call's own transaction, and a difference makes
the call read the catalog again and start over. Names nothing is callable by are not
kept: the next request reads them again, so a function created a moment ago is found.
"""

from __future__ import annotations

from devstack.postgrest import catalog
from devstack.postgrest.catalog import Connection, Overloads

# Distinct function names a server sees are few; the bound only stops a client that calls
# endless made-up names from growing the cache, and those are never kept anyway.
_MAX_ENTRIES = 4096


class SchemaCache:
    def __init__(self) -> None:
        self._entries: dict[tuple[str, str], Overloads] = {}

    def get(self, schema: str, name: str) -> Overloads | None:
        return self._entries.get((schema, name))

    async def read(self, conn: Connection, schema: str, name: str) -> Overloads:
        """The overloads as the catalog has them now; kept when there is something to call."""
        overloads = await catalog.routines_named(conn, schema, name)
        key = (schema, name)
        if not overloads.routines:
            self._entries.pop(key, None)
        else:
            if len(self._entries) >= _MAX_ENTRIES and key not in self._entries:
                self._entries.clear()
            self._entries[key] = overloads
        return overloads

    def forget(self, schema: str, name: str) -> None:
        self._entries.pop((schema, name), None)
