/* contrib/alps/alps--1.0.sql: written by `make sql` from alps.sql.in and the library's
   declarations; edit those, not this file. */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION alps" to load this file. \quit

CREATE FUNCTION @extschema@."wake"() RETURNS boolean AS 'MODULE_PATHNAME', 'alps_wake' LANGUAGE c VOLATILE PARALLEL UNSAFE;

-- Starting work early is for administrators (or whom they grant it to).
REVOKE ALL ON FUNCTION @extschema@.wake() FROM PUBLIC;
