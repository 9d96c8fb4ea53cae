-- =============================================================================================
-- Privilege hygiene and the `private` schema.
-- `private` is never exposed by the API (config.toml lists only public and graphql_public): it
-- holds SECURITY DEFINER functions, trigger functions and secrets. Functions get no EXECUTE for
-- PUBLIC by default; each one is granted to the named roles that need it.
-- =============================================================================================

create schema if not exists private;
comment on schema private is
  'Internal functions and secrets; not exposed through the API. Execute rights are granted per function.';

revoke all on schema private from public;
grant usage on schema private to authenticated, service_role;

-- New functions created by the migration role are not executable by PUBLIC (PostgreSQL's default
-- otherwise). Functions in public still get the Supabase defaults for the API roles, so each
-- migration revokes or grants explicitly.
alter default privileges revoke execute on functions from public;
alter default privileges in schema private revoke execute on functions from public, anon, authenticated;
alter default privileges in schema private revoke all on tables from public, anon, authenticated;

-- TRUNCATE ignores row level security, and the API roles never need it (nor REFERENCES or
-- TRIGGER): tables created from here on do not grant them to anon or authenticated.
alter default privileges in schema public revoke truncate, references, trigger on tables from anon, authenticated;

-- Sequences (identity columns) serve only the writers of their table: the API roles insert into
-- no table that has one, and UPDATE on a sequence would let them move it (setval).
alter default privileges in schema public revoke all on sequences from anon, authenticated;

-- ---------------------------------------------------------------------------------------------
-- updated_at maintenance, shared by every table that has the column.
-- ---------------------------------------------------------------------------------------------
create or replace function private.set_updated_at()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  new.updated_at := now();
  return new;
end;
$$;
comment on function private.set_updated_at() is
  'BEFORE UPDATE trigger: stamps updated_at with the transaction time.';

revoke execute on function private.set_updated_at() from public, anon, authenticated;
