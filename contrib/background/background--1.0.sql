/* contrib/background/background--1.0.sql: written by `make sql` from background.sql.in and
   the library's declarations; edit those, not this file. */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION background" to load this file. \quit

CREATE FUNCTION "pg_background_detach"("pid" integer) RETURNS void AS 'MODULE_PATHNAME', 'pg_background_detach' LANGUAGE c VOLATILE STRICT PARALLEL UNSAFE;
CREATE FUNCTION "pg_background_launch"("sql" text, "queue_size" integer DEFAULT 0) RETURNS integer AS 'MODULE_PATHNAME', 'pg_background_launch' LANGUAGE c VOLATILE STRICT PARALLEL UNSAFE;
CREATE FUNCTION "pg_background_result"("pid" integer) RETURNS SETOF record AS 'MODULE_PATHNAME', 'pg_background_result' LANGUAGE c VOLATILE STRICT PARALLEL UNSAFE;

-- Starting workers is for whom an administrator grants it to.
REVOKE ALL ON FUNCTION pg_background_launch(text, int4) FROM PUBLIC;
REVOKE ALL ON FUNCTION pg_background_result(int4) FROM PUBLIC;
REVOKE ALL ON FUNCTION pg_background_detach(int4) FROM PUBLIC;
