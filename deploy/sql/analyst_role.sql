-- Read-only role for analysts: SELECT on the views in schema `reporting`, nothing else.
--
-- What it does, idempotently (run it again after changing anything; it converges):
--   * creates the group role (NOLOGIN) if missing and strips it of any attribute that could
--     write or escalate; sets default_transaction_read_only = on and search_path = reporting;
--   * creates the schemas `reporting` and `lifecycle_internal` if missing, owned by the engine's
--     role, so it may run before the engine has started once;
--   * database: CONNECT for the role; TEMPORARY revoked from PUBLIC (no temporary tables either);
--   * schema public (the event store's tables) and `lifecycle_internal`: no CREATE for PUBLIC,
--     no table privileges for PUBLIC or the role (the engine's role owns its tables and keeps
--     every right on them);
--   * `reporting`: USAGE and SELECT on every table, now and on tables the engine's role creates
--     later (ALTER DEFAULT PRIVILEGES), so a `lifecycle projections rebuild` keeps them readable.
--
-- Run it in the engine's database as a superuser (or as a role with CREATEROLE that is a member
-- of the engine's role), with psql:
--
--   psql "$LIFECYCLE_DATABASE_URL" -v ON_ERROR_STOP=1 -f deploy/sql/analyst_role.sql
--   psql ... -v analyst_role=bi_readers -v engine_role=lifecycle_svc -f deploy/sql/analyst_role.sql
--
-- Variables: analyst_role (default lifecycle_analyst): the group role to create or fix;
-- engine_role (default: the database owner): the role the engine connects as, which creates the
-- views. From Python: deploy.analyst.grant_analyst_role(url, role=..., login=..., password=...)
-- runs this same file.
--
-- Without psql, a fixed name: replace :'analyst_role' below by a quoted literal such as
-- 'lifecycle_analyst', :'engine_role' by '' and drop the lines starting with a backslash.
--
-- Then give people logins that are members of the group (settings of a group role do not apply
-- to its members' sessions, hence the two ALTER ROLE ... SET lines per login):
--
--   CREATE ROLE alice LOGIN PASSWORD 'change-me' IN ROLE lifecycle_analyst;
--   ALTER ROLE alice SET default_transaction_read_only = on;
--   ALTER ROLE alice SET search_path = reporting;
--
-- Not covered by any role setting: every role can read the system catalogs (pg_catalog,
-- information_schema: names of tables, not their rows) and CONNECT to other databases of the
-- cluster where PUBLIC still has CONNECT.

\if :{?analyst_role}
\else
\set analyst_role lifecycle_analyst
\endif
\if :{?engine_role}
\else
\set engine_role ''
\endif

BEGIN;

SELECT set_config('lifecycle.analyst_role', :'analyst_role', true),
       set_config('lifecycle.engine_role', :'engine_role', true);

DO $analyst$
DECLARE
    analyst text := current_setting('lifecycle.analyst_role');
    engine text := coalesce(
        nullif(current_setting('lifecycle.engine_role'), ''),
        (SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()));
    db text := current_database();
    schema_name text;
BEGIN
    IF analyst IS NULL OR analyst = '' THEN
        RAISE EXCEPTION 'analyst_role must not be empty';
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = engine) THEN
        RAISE EXCEPTION 'engine_role % does not exist', engine;
    END IF;
    IF analyst = engine THEN
        RAISE EXCEPTION 'the analyst role must not be the engine''s role (%)', engine;
    END IF;

    -- 1. The group role: no login, no attribute that writes or escalates.
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = analyst) THEN
        EXECUTE format('CREATE ROLE %I NOLOGIN', analyst);
    END IF;
    EXECUTE format('ALTER ROLE %I NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS',
                   analyst);
    EXECUTE format('ALTER ROLE %I SET default_transaction_read_only = on', analyst);
    EXECUTE format('ALTER ROLE %I SET search_path = reporting', analyst);

    -- 2. The schemas, if the engine has not created them yet (same comments as the engine's).
    IF NOT EXISTS (SELECT FROM pg_namespace WHERE nspname = 'reporting') THEN
        EXECUTE format('CREATE SCHEMA reporting AUTHORIZATION %I', engine);
        COMMENT ON SCHEMA reporting IS
            'Customer lifecycle views for analysts (current state, rebuilt from the event log).';
    END IF;
    IF NOT EXISTS (SELECT FROM pg_namespace WHERE nspname = 'lifecycle_internal') THEN
        EXECUTE format('CREATE SCHEMA lifecycle_internal AUTHORIZATION %I', engine);
        COMMENT ON SCHEMA lifecycle_internal IS 'Bookkeeping of the customer lifecycle engine; not for analysis.';
    END IF;

    -- 3. The database: connect, but no schemas and no temporary tables. TEMPORARY is revoked
    -- from PUBLIC (a grant to PUBLIC cannot be taken from one role only); the database owner
    -- keeps it as owner, and an engine role that is not the owner gets it explicitly (the view
    -- store uses temporary tables for bulk appends).
    EXECUTE format('REVOKE ALL ON DATABASE %I FROM %I', db, analyst);
    EXECUTE format('REVOKE TEMPORARY ON DATABASE %I FROM PUBLIC', db);
    EXECUTE format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO %I', db, engine);
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO %I', db, analyst);

    -- 4. Schema public, where the event store's tables are. Before PostgreSQL 15 PUBLIC may
    -- create there, and the engine's role may depend on it: give the engine its own grant first.
    IF EXISTS (SELECT FROM pg_namespace WHERE nspname = 'public') THEN
        EXECUTE format('GRANT USAGE, CREATE ON SCHEMA public TO %I', engine);
        REVOKE CREATE ON SCHEMA public FROM PUBLIC;
        REVOKE ALL ON ALL TABLES IN SCHEMA public FROM PUBLIC;
        REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM PUBLIC;
    END IF;

    -- 5. Nothing for the role in any schema but reporting (grants it may have had before).
    FOR schema_name IN
        SELECT nspname FROM pg_namespace
        WHERE nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast', 'reporting')
          AND nspname NOT LIKE 'pg_temp_%' AND nspname NOT LIKE 'pg_toast_temp_%'
    LOOP
        EXECUTE format('REVOKE ALL ON SCHEMA %I FROM %I', schema_name, analyst);
        EXECUTE format('REVOKE ALL ON ALL TABLES IN SCHEMA %I FROM %I', schema_name, analyst);
        EXECUTE format('REVOKE ALL ON ALL SEQUENCES IN SCHEMA %I FROM %I', schema_name, analyst);
    END LOOP;
    REVOKE ALL ON SCHEMA lifecycle_internal FROM PUBLIC;
    REVOKE ALL ON ALL TABLES IN SCHEMA lifecycle_internal FROM PUBLIC;

    -- 6. reporting: read every table, now and later; write none.
    REVOKE CREATE ON SCHEMA reporting FROM PUBLIC;
    EXECUTE format('REVOKE ALL ON SCHEMA reporting FROM %I', analyst);
    EXECUTE format('REVOKE ALL ON ALL TABLES IN SCHEMA reporting FROM %I', analyst);
    EXECUTE format('GRANT USAGE ON SCHEMA reporting TO %I', analyst);
    EXECUTE format('GRANT SELECT ON ALL TABLES IN SCHEMA reporting TO %I', analyst);
    EXECUTE format('ALTER DEFAULT PRIVILEGES FOR ROLE %I IN SCHEMA reporting GRANT SELECT ON TABLES TO %I',
                   engine, analyst);
END
$analyst$;

COMMIT;
