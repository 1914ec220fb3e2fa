/* contrib/worker_spi/worker_spi--1.0.sql: written by `make sql` from worker_spi.sql.in and
   the library's declarations; edit those, not this file. */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION worker_spi" to load this file. \quit

CREATE FUNCTION "worker_spi_launch"("index" integer, "dboid" oid DEFAULT 0, "roleoid" oid DEFAULT 0, "flags" text[] DEFAULT '{}') RETURNS integer AS 'MODULE_PATHNAME', 'worker_spi_launch' LANGUAGE c VOLATILE STRICT PARALLEL UNSAFE;

-- Starting workers is for administrators (or whom they grant it to).
REVOKE ALL ON FUNCTION worker_spi_launch(int4, oid, oid, text[]) FROM PUBLIC;
