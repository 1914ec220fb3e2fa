/* contrib/alps/alps--1.0.sql */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION alps" to load this file. \quit

-- Wakes the ALPS worker for an early cycle; false when it is not running.
CREATE FUNCTION @extschema@.wake() RETURNS boolean
AS 'MODULE_PATHNAME', 'alps_wake'
LANGUAGE C;

-- Starting work early is for administrators (or whom they grant it to).
REVOKE ALL ON FUNCTION @extschema@.wake() FROM PUBLIC;
