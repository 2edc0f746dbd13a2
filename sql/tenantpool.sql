-- tenantpool signed tenant context.
--
-- RLS policies written as `tenant_id = (SELECT tenantpool.current_tenant())`
-- trust only a tenant that tenantpool itself established on this backend, with
-- a signature over (backend pid, backend start time, a nonce that only grows,
-- tenant) keyed by a secret the application role cannot read. Setting
-- app.current_tenant by hand, from dynamic SQL or a function, changes nothing
-- that current_tenant() returns.
--
-- Install as a superuser (or the owner of the RLS tables), in each database:
--   tenantpool signed-context-sql --config tenantpool.toml --database app | psql -d app
-- which sets the psql variables this script expects:
--   k_ipad, k_opad : the signing key mixed for HMAC-SHA256 (hex), so the key itself is never stored
--   app_role       : the role the pool logs in as
-- Re-running it replaces the functions and the key.

\set ON_ERROR_STOP on

CREATE SCHEMA IF NOT EXISTS tenantpool;
REVOKE ALL ON SCHEMA tenantpool FROM PUBLIC;
GRANT USAGE ON SCHEMA tenantpool TO :"app_role";

-- The key, as HMAC's inner and outer padded keys. Readable only by its owner,
-- i.e. by the SECURITY DEFINER functions below, never by the application role.
CREATE TABLE IF NOT EXISTS tenantpool.signing_key (
    id     int PRIMARY KEY CHECK (id = 1),
    k_ipad bytea NOT NULL,
    k_opad bytea NOT NULL
);
REVOKE ALL ON tenantpool.signing_key FROM PUBLIC;
INSERT INTO tenantpool.signing_key VALUES (1, decode(:'k_ipad', 'hex'), decode(:'k_opad', 'hex'))
    ON CONFLICT (id) DO UPDATE SET k_ipad = excluded.k_ipad, k_opad = excluded.k_opad;

-- The newest nonce accepted per backend. It lives outside the session (unlogged:
-- no WAL, emptied after a crash, when every backend is new anyway) so a
-- DISCARD ALL in the session cannot make an old signature acceptable again.
CREATE UNLOGGED TABLE IF NOT EXISTS tenantpool.nonces (
    pid           int PRIMARY KEY,
    backend_start bigint NOT NULL,
    nonce         bigint NOT NULL
);
REVOKE ALL ON tenantpool.nonces FROM PUBLIC;

-- Entered by tenantpool before a client's transaction when the tenant changes.
CREATE OR REPLACE FUNCTION tenantpool.enter(tenant text, nonce bigint, signature text)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    started bigint;
    expected bytea;
    k record;
    accepted int;
BEGIN
    SELECT (extract(epoch FROM a.backend_start) * 1000000)::bigint INTO started
      FROM pg_stat_activity a WHERE a.pid = pg_backend_pid();
    SELECT * INTO k FROM tenantpool.signing_key WHERE id = 1;
    expected := sha256(k.k_opad || sha256(k.k_ipad || convert_to(
        format('v1|%s|%s|%s|%s', pg_backend_pid(), started, nonce, tenant), 'UTF8')));
    IF signature IS NULL OR expected IS DISTINCT FROM decode(signature, 'hex') THEN
        RAISE EXCEPTION USING ERRCODE = '42501', MESSAGE = 'tenantpool: invalid tenant context signature';
    END IF;

    -- Replay: on this backend (same pid and start time) the nonce must grow.
    INSERT INTO tenantpool.nonces AS n VALUES (pg_backend_pid(), started, nonce)
        ON CONFLICT (pid) DO UPDATE SET backend_start = excluded.backend_start, nonce = excluded.nonce
        WHERE n.backend_start <> excluded.backend_start OR n.nonce < excluded.nonce;
    GET DIAGNOSTICS accepted = ROW_COUNT;
    IF accepted = 0 THEN
        RAISE EXCEPTION USING ERRCODE = '42501', MESSAGE = 'tenantpool: replayed tenant context signature';
    END IF;

    -- The session's context: a temporary table owned by this function's owner,
    -- which the application role can neither write nor replace (nor, lacking
    -- the TEMPORARY privilege, forge).
    IF has_database_privilege(session_user, current_database(), 'TEMPORARY') THEN
        RAISE EXCEPTION USING ERRCODE = '42501',
            MESSAGE = format('tenantpool: role %s must not have the TEMPORARY privilege on this database', session_user);
    END IF;
    IF to_regclass('pg_temp.tenantpool_context') IS NULL THEN
        CREATE TEMPORARY TABLE tenantpool_context (tenant text NOT NULL);
    ELSIF (SELECT c.relowner FROM pg_class c WHERE c.oid = to_regclass('pg_temp.tenantpool_context'))
          <> (SELECT r.oid FROM pg_roles r WHERE r.rolname = current_user) THEN
        RAISE EXCEPTION USING ERRCODE = '42501', MESSAGE = 'tenantpool: foreign tenantpool_context table';
    END IF;
    DELETE FROM pg_temp.tenantpool_context;
    INSERT INTO pg_temp.tenantpool_context VALUES (tenant);
END
$fn$;

-- The tenant tenantpool established on this backend; raises when there is none.
-- Runs once per query that an RLS policy calls it from (write it as a
-- sub-select), so it is kept cheap: no SET clause (every name below is
-- schema-qualified instead, so search_path cannot redirect it), and no owner
-- check on the context table: the pool role cannot create temporary tables at
-- all (see the REVOKE below, re-checked here), so the table can only be enter()'s.
CREATE OR REPLACE FUNCTION tenantpool.current_tenant()
RETURNS pg_catalog.text
LANGUAGE plpgsql STABLE SECURITY DEFINER
AS $fn$
DECLARE
    t pg_catalog.text;
BEGIN
    IF pg_catalog.to_regclass('pg_temp.tenantpool_context') IS NULL
       OR pg_catalog.has_database_privilege(session_user, pg_catalog.current_database(), 'TEMPORARY') THEN
        RAISE EXCEPTION USING ERRCODE = '42501', MESSAGE = 'tenantpool: no signed tenant context on this connection';
    END IF;
    SELECT c.tenant INTO t FROM pg_temp.tenantpool_context c;
    IF t IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = '42501', MESSAGE = 'tenantpool: no signed tenant context on this connection';
    END IF;
    RETURN t;
END
$fn$;

-- The pool role must not create temporary tables, or it could plant its own
-- tenantpool_context. (Temporary tables are session state, which transaction
-- pooling does not keep anyway.)
SELECT format('REVOKE TEMPORARY ON DATABASE %I FROM PUBLIC, %I', current_database(), :'app_role') \gexec

REVOKE ALL ON FUNCTION tenantpool.enter(text, bigint, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION tenantpool.current_tenant() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tenantpool.enter(text, bigint, text) TO :"app_role";
GRANT EXECUTE ON FUNCTION tenantpool.current_tenant() TO :"app_role";
