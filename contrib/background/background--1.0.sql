/* contrib/background/background--1.0.sql: written by `make sql` from background.sql.in and
   the library's declarations; edit those, not this file. */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION background" to load this file. \quit

CREATE TYPE "pg_background_error" AS ("sqlstate" text, "message" text, "detail" text, "hint" text, "context" text);
CREATE TYPE "pg_background_handle" AS ("pid" integer, "cookie" bigint);
CREATE TYPE "pg_background_progress" AS ("progress_pct" integer, "progress_msg" text);
CREATE TYPE "pg_background_stats" AS ("workers_launched" bigint, "workers_completed" bigint, "workers_failed" bigint, "workers_canceled" bigint, "workers_active" integer, "avg_execution_ms" double precision, "max_workers" integer);
CREATE FUNCTION "pg_background_cancel_v2_grace"("pid" integer, "cookie" bigint, "grace_ms" integer) RETURNS void AS 'MODULE_PATHNAME', 'pg_background_cancel_v2_grace' LANGUAGE c VOLATILE STRICT PARALLEL UNSAFE;
CREATE FUNCTION "pg_background_cancel_v2"("pid" integer, "cookie" bigint) RETURNS void AS 'MODULE_PATHNAME', 'pg_background_cancel_v2' LANGUAGE c VOLATILE STRICT PARALLEL UNSAFE;
CREATE FUNCTION "pg_background_describe_v2"("pid" integer, "cookie" bigint) RETURNS TABLE (column_number int4, column_name text, column_type regtype, column_typmod int4) AS 'MODULE_PATHNAME', 'pg_background_describe_v2' LANGUAGE c VOLATILE STRICT PARALLEL UNSAFE;
CREATE FUNCTION "pg_background_detach_v2"("pid" integer, "cookie" bigint) RETURNS void AS 'MODULE_PATHNAME', 'pg_background_detach_v2' LANGUAGE c VOLATILE STRICT PARALLEL UNSAFE;
CREATE FUNCTION "pg_background_detach"("pid" integer) RETURNS void AS 'MODULE_PATHNAME', 'pg_background_detach' LANGUAGE c VOLATILE STRICT PARALLEL UNSAFE;
CREATE FUNCTION "pg_background_error_v2"("pid" integer, "cookie" bigint) RETURNS pg_background_error AS 'MODULE_PATHNAME', 'pg_background_error_v2' LANGUAGE c VOLATILE STRICT PARALLEL UNSAFE;
CREATE FUNCTION "pg_background_get_progress_v2"("pid" integer, "cookie" bigint) RETURNS pg_background_progress AS 'MODULE_PATHNAME', 'pg_background_get_progress_v2' LANGUAGE c VOLATILE STRICT PARALLEL UNSAFE;
CREATE FUNCTION "pg_background_launch_v2"("sql" text, "queue_size" integer DEFAULT 0) RETURNS pg_background_handle AS 'MODULE_PATHNAME', 'pg_background_launch_v2' LANGUAGE c VOLATILE STRICT PARALLEL UNSAFE;
CREATE FUNCTION "pg_background_launch"("sql" text, "queue_size" integer DEFAULT 0) RETURNS integer AS 'MODULE_PATHNAME', 'pg_background_launch' LANGUAGE c VOLATILE STRICT PARALLEL UNSAFE;
CREATE FUNCTION "pg_background_list_v2"() RETURNS SETOF record AS 'MODULE_PATHNAME', 'pg_background_list_v2' LANGUAGE c VOLATILE PARALLEL UNSAFE;
CREATE FUNCTION "pg_background_pool_jobs"() RETURNS SETOF record AS 'MODULE_PATHNAME', 'pg_background_pool_jobs' LANGUAGE c VOLATILE PARALLEL UNSAFE;
CREATE FUNCTION "pg_background_progress"("pct" integer, "msg" text DEFAULT NULL) RETURNS void AS 'MODULE_PATHNAME', 'pg_background_progress' LANGUAGE c VOLATILE PARALLEL UNSAFE;
CREATE FUNCTION "pg_background_result_v2"("pid" integer, "cookie" bigint) RETURNS SETOF record AS 'MODULE_PATHNAME', 'pg_background_result_v2' LANGUAGE c VOLATILE STRICT PARALLEL UNSAFE;
CREATE FUNCTION "pg_background_result"("pid" integer) RETURNS SETOF record AS 'MODULE_PATHNAME', 'pg_background_result' LANGUAGE c VOLATILE STRICT PARALLEL UNSAFE;
CREATE FUNCTION "pg_background_run_v2"("pid" integer, "cookie" bigint, "sql" text) RETURNS void AS 'MODULE_PATHNAME', 'pg_background_run_v2' LANGUAGE c VOLATILE STRICT PARALLEL UNSAFE;
CREATE FUNCTION "pg_background_stats_v2"() RETURNS pg_background_stats AS 'MODULE_PATHNAME', 'pg_background_stats_v2' LANGUAGE c VOLATILE PARALLEL UNSAFE;
CREATE FUNCTION "pg_background_submit_v2"("sql" text, "queue_size" integer DEFAULT 0) RETURNS pg_background_handle AS 'MODULE_PATHNAME', 'pg_background_submit_v2' LANGUAGE c VOLATILE STRICT PARALLEL UNSAFE;
CREATE FUNCTION "pg_background_wait_v2_timeout"("pid" integer, "cookie" bigint, "timeout_ms" integer) RETURNS boolean AS 'MODULE_PATHNAME', 'pg_background_wait_v2_timeout' LANGUAGE c VOLATILE STRICT PARALLEL UNSAFE;
CREATE FUNCTION "pg_background_wait_v2"("pid" integer, "cookie" bigint) RETURNS void AS 'MODULE_PATHNAME', 'pg_background_wait_v2' LANGUAGE c VOLATILE STRICT PARALLEL UNSAFE;

-- The functions that start, read or steer workers, for the grant helpers below.
CREATE FUNCTION background_functions() RETURNS regprocedure[]
LANGUAGE sql STABLE SET search_path = pg_catalog AS $$
    SELECT ARRAY[
        '@extschema@.pg_background_launch(text, int4)',
        '@extschema@.pg_background_result(int4)',
        '@extschema@.pg_background_detach(int4)',
        '@extschema@.pg_background_launch_v2(text, int4)',
        '@extschema@.pg_background_submit_v2(text, int4)',
        '@extschema@.pg_background_run_v2(int4, int8, text)',
        '@extschema@.pg_background_result_v2(int4, int8)',
        '@extschema@.pg_background_detach_v2(int4, int8)',
        '@extschema@.pg_background_cancel_v2(int4, int8)',
        '@extschema@.pg_background_cancel_v2_grace(int4, int8, int4)',
        '@extschema@.pg_background_wait_v2(int4, int8)',
        '@extschema@.pg_background_wait_v2_timeout(int4, int8, int4)',
        '@extschema@.pg_background_list_v2()',
        '@extschema@.pg_background_stats_v2()',
        '@extschema@.pg_background_progress(int4, text)',
        '@extschema@.pg_background_get_progress_v2(int4, int8)',
        '@extschema@.pg_background_describe_v2(int4, int8)',
        '@extschema@.pg_background_error_v2(int4, int8)',
        '@extschema@.pg_background_pool_jobs()'
    ]::regprocedure[]
$$;

-- Nothing is PUBLIC's: an administrator grants the functions to whom may use them.
DO $$
DECLARE
    f regprocedure;
BEGIN
    FOREACH f IN ARRAY background_functions() LOOP
        EXECUTE pg_catalog.format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
    END LOOP;
END
$$;

-- The cluster's pooled workers and their jobs, from shared memory: a role sees those of
-- the roles it has the privileges of (a superuser sees all).
CREATE VIEW pg_background_jobs AS
    SELECT * FROM pg_background_pool_jobs()
        AS (pid int4, database oid, role oid, state text, submitter int4,
            started timestamptz, query text, jobs_done int8, warm bool);
REVOKE ALL ON pg_background_jobs FROM PUBLIC;

-- GRANTs (or REVOKEs) EXECUTE on every function of the extension to (from) a role; true
-- when done. With print_commands, each command is shown as an INFO.
CREATE FUNCTION grant_pg_background_privileges(role_name text, print_commands boolean DEFAULT false)
RETURNS boolean LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
DECLARE
    f regprocedure;
    command text;
BEGIN
    FOREACH f IN ARRAY @extschema@.background_functions() LOOP
        command := format('GRANT EXECUTE ON FUNCTION %s TO %I', f, role_name);
        EXECUTE command;
        IF print_commands THEN
            RAISE INFO '%', command;
        END IF;
    END LOOP;
    command := format('GRANT SELECT ON @extschema@.pg_background_jobs TO %I', role_name);
    EXECUTE command;
    IF print_commands THEN
        RAISE INFO '%', command;
    END IF;
    RETURN true;
END
$$;

CREATE FUNCTION revoke_pg_background_privileges(role_name text, print_commands boolean DEFAULT false)
RETURNS boolean LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
DECLARE
    f regprocedure;
    command text;
BEGIN
    FOREACH f IN ARRAY @extschema@.background_functions() LOOP
        command := format('REVOKE EXECUTE ON FUNCTION %s FROM %I', f, role_name);
        EXECUTE command;
        IF print_commands THEN
            RAISE INFO '%', command;
        END IF;
    END LOOP;
    command := format('REVOKE SELECT ON @extschema@.pg_background_jobs FROM %I', role_name);
    EXECUTE command;
    IF print_commands THEN
        RAISE INFO '%', command;
    END IF;
    RETURN true;
END
$$;

REVOKE ALL ON FUNCTION grant_pg_background_privileges(text, boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION revoke_pg_background_privileges(text, boolean) FROM PUBLIC;
