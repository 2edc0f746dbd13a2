-- RLS demo schema for tenantpool: two tenants (acme, globex) sharing one table.
--
-- Run as the superuser with psql; the loader sets the psql variable
-- `app_password` (used below as :'app_password') so no password lives here.
-- Safe to re-run: the role is created once, the table is recreated.

\set ON_ERROR_STOP on

-- The application role. NOSUPERUSER and NOBYPASSRLS because superusers and
-- BYPASSRLS roles skip row-level security entirely, which would make the
-- policy below meaningless. Roles are cluster-wide, so create it only once.
SELECT 'CREATE ROLE app LOGIN'
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'app')
\gexec
ALTER ROLE app WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS
    PASSWORD :'app_password';

DROP TABLE IF EXISTS items;

-- Owned by the superuser running this script, not by app: a table owner can
-- ALTER TABLE ... DISABLE ROW LEVEL SECURITY or drop the policy, so the role
-- the pooler connects as must not own what it is isolated from.
CREATE TABLE items (
    id         bigserial PRIMARY KEY,
    tenant_id  text NOT NULL,
    name       text NOT NULL,
    created_at timestamptz DEFAULT now()
);
CREATE INDEX items_tenant_id_id_idx ON items (tenant_id, id);

ALTER TABLE items ENABLE ROW LEVEL SECURITY;
-- FORCE applies the policy to the table owner too, so isolation still holds
-- if ownership is ever handed to the application role.
ALTER TABLE items FORCE ROW LEVEL SECURITY;

-- current_setting(..., true) returns NULL instead of raising when
-- app.current_tenant was never set, so a session without a tenant sees no
-- rows (and cannot write any) rather than failing.
CREATE POLICY tenant_isolation ON items
    USING (tenant_id = current_setting('app.current_tenant', true))
    WITH CHECK (tenant_id = current_setting('app.current_tenant', true));

GRANT USAGE ON SCHEMA public TO app;
GRANT SELECT, INSERT, UPDATE, DELETE ON items TO app;
GRANT USAGE, SELECT ON SEQUENCE items_id_seq TO app;

-- Seed rows are inserted by the superuser, which is exempt from RLS.
INSERT INTO items (tenant_id, name) VALUES
    ('acme',   'acme anvil'),
    ('acme',   'acme rocket skates'),
    ('acme',   'acme giant magnet'),
    ('globex', 'globex doomsday device'),
    ('globex', 'globex hammock');
