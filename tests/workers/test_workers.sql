-- The SQL functions of the test workers library (tests/workers): written by `make sql` from
-- test_workers.sql.in and the library's declarations; edit those, not this file.

CREATE TYPE "numbered" AS ("n" integer, "name" text);
CREATE FUNCTION "add_step"("x" integer, "step" integer DEFAULT 1) RETURNS integer AS 'MODULE_PATHNAME', 'add_with_default' LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION "conversion_error_at"("sql" text) RETURNS text AS 'MODULE_PATHNAME', 'conversion_error_at' LANGUAGE c VOLATILE STRICT PARALLEL UNSAFE;
CREATE FUNCTION "dsm_misuse"() RETURNS text[] AS 'MODULE_PATHNAME', 'dsm_misuse' LANGUAGE c VOLATILE PARALLEL UNSAFE;
CREATE FUNCTION "echo_bool"("value" boolean) RETURNS boolean AS 'MODULE_PATHNAME', 'echo_bool' LANGUAGE c VOLATILE STRICT PARALLEL UNSAFE;
CREATE FUNCTION "echo_bytea"("value" bytea) RETURNS bytea AS 'MODULE_PATHNAME', 'echo_bytea' LANGUAGE c VOLATILE STRICT PARALLEL UNSAFE;
CREATE FUNCTION "echo_float4"("value" real) RETURNS real AS 'MODULE_PATHNAME', 'echo_float4' LANGUAGE c VOLATILE STRICT PARALLEL UNSAFE;
CREATE FUNCTION "echo_float8_array"("value" double precision[]) RETURNS double precision[] AS 'MODULE_PATHNAME', 'echo_float8_array' LANGUAGE c VOLATILE STRICT PARALLEL UNSAFE;
CREATE FUNCTION "echo_float8"("value" double precision) RETURNS double precision AS 'MODULE_PATHNAME', 'echo_float8' LANGUAGE c VOLATILE STRICT PARALLEL UNSAFE;
CREATE FUNCTION "echo_int2"("value" smallint) RETURNS smallint AS 'MODULE_PATHNAME', 'echo_int2' LANGUAGE c VOLATILE STRICT PARALLEL UNSAFE;
CREATE FUNCTION "echo_int4_array"("value" integer[]) RETURNS integer[] AS 'MODULE_PATHNAME', 'echo_int4_array' LANGUAGE c VOLATILE STRICT PARALLEL UNSAFE;
CREATE FUNCTION "echo_int4"("value" integer) RETURNS integer AS 'MODULE_PATHNAME', 'echo_int4' LANGUAGE c VOLATILE STRICT PARALLEL UNSAFE;
CREATE FUNCTION "echo_int8"("value" bigint) RETURNS bigint AS 'MODULE_PATHNAME', 'echo_int8' LANGUAGE c VOLATILE STRICT PARALLEL UNSAFE;
CREATE FUNCTION "echo_nullable_int8"("value" bigint) RETURNS bigint AS 'MODULE_PATHNAME', 'echo_nullable_int8' LANGUAGE c VOLATILE PARALLEL UNSAFE;
CREATE FUNCTION "echo_numeric_array"("value" numeric[]) RETURNS numeric[] AS 'MODULE_PATHNAME', 'echo_numeric_array' LANGUAGE c VOLATILE STRICT PARALLEL UNSAFE;
CREATE FUNCTION "echo_numeric"("value" numeric) RETURNS numeric AS 'MODULE_PATHNAME', 'echo_numeric' LANGUAGE c VOLATILE STRICT PARALLEL UNSAFE;
CREATE FUNCTION "echo_oid"("value" oid) RETURNS oid AS 'MODULE_PATHNAME', 'echo_oid' LANGUAGE c VOLATILE STRICT PARALLEL UNSAFE;
CREATE FUNCTION "echo_text_array"("value" text[]) RETURNS text[] AS 'MODULE_PATHNAME', 'echo_text_array' LANGUAGE c VOLATILE STRICT PARALLEL UNSAFE;
CREATE FUNCTION "echo_text"("value" text) RETURNS text AS 'MODULE_PATHNAME', 'echo_text' LANGUAGE c VOLATILE STRICT PARALLEL UNSAFE;
CREATE FUNCTION "error_in_subtransaction"() RETURNS text AS 'MODULE_PATHNAME', 'error_in_subtransaction' LANGUAGE c VOLATILE PARALLEL UNSAFE;
CREATE FUNCTION "fail_with"("code" text, "message" text) RETURNS void AS 'MODULE_PATHNAME', 'fail_with' LANGUAGE c VOLATILE STRICT PARALLEL UNSAFE;
CREATE FUNCTION "from_thread"() RETURNS text AS 'MODULE_PATHNAME', 'from_thread' LANGUAGE c VOLATILE PARALLEL UNSAFE;
CREATE FUNCTION "guc_values"() RETURNS text AS 'MODULE_PATHNAME', 'guc_values' LANGUAGE c VOLATILE PARALLEL UNSAFE;
CREATE FUNCTION "handle_outlives_spi"() RETURNS text AS 'MODULE_PATHNAME', 'handle_outlives_spi' LANGUAGE c VOLATILE PARALLEL UNSAFE;
CREATE FUNCTION "insert_then_ignore_error"("label" text) RETURNS text AS 'MODULE_PATHNAME', 'insert_then_ignore_error' LANGUAGE c VOLATILE STRICT PARALLEL UNSAFE;
CREATE FUNCTION "int8_as_int8"() RETURNS bigint AS 'MODULE_PATHNAME', 'int8_result' LANGUAGE c VOLATILE PARALLEL UNSAFE;
CREATE FUNCTION "keyword_args"("user" text, "limit" integer, "type" text) RETURNS text AS 'MODULE_PATHNAME', 'keyword_args' LANGUAGE c VOLATILE PARALLEL UNSAFE;
CREATE FUNCTION "launch_and_stop"() RETURNS text AS 'MODULE_PATHNAME', 'launch_and_stop' LANGUAGE c VOLATILE PARALLEL UNSAFE;
CREATE FUNCTION "launch_error"("kind" text) RETURNS text AS 'MODULE_PATHNAME', 'launch_error' LANGUAGE c VOLATILE STRICT PARALLEL UNSAFE;
CREATE FUNCTION "launch"("kind" text, "extra" text DEFAULT NULL) RETURNS integer AS 'MODULE_PATHNAME', 'launch' LANGUAGE c VOLATILE PARALLEL UNSAFE;
CREATE FUNCTION "lock_released_under_guard"("what" text) RETURNS text AS 'MODULE_PATHNAME', 'lock_released_under_guard' LANGUAGE c VOLATILE STRICT PARALLEL UNSAFE;
CREATE FUNCTION "misuse_record_set"("phase" text) RETURNS SETOF record AS 'MODULE_PATHNAME', 'misuse_record_set' LANGUAGE c VOLATILE STRICT PARALLEL UNSAFE;
CREATE FUNCTION "mq_echo"("message" text) RETURNS text AS 'MODULE_PATHNAME', 'mq_echo' LANGUAGE c VOLATILE STRICT PARALLEL UNSAFE;
CREATE FUNCTION "numbered"("n" integer) RETURNS numbered AS 'MODULE_PATHNAME', 'numbered' LANGUAGE c VOLATILE STRICT PARALLEL UNSAFE;
CREATE FUNCTION "own_writes"() RETURNS text AS 'MODULE_PATHNAME', 'own_writes' LANGUAGE c VOLATILE PARALLEL UNSAFE;
CREATE FUNCTION "panic_with"("message" text) RETURNS void AS 'MODULE_PATHNAME', 'panic_with' LANGUAGE c VOLATILE STRICT PARALLEL UNSAFE;
CREATE FUNCTION "param_void"() RETURNS text AS 'MODULE_PATHNAME', 'param_void' LANGUAGE c VOLATILE PARALLEL UNSAFE;
CREATE FUNCTION "push_raw"("value" bytea) RETURNS SETOF record AS 'MODULE_PATHNAME', 'push_raw' LANGUAGE c VOLATILE STRICT PARALLEL UNSAFE;
CREATE FUNCTION "queue_outlives_spi"("message" text) RETURNS text AS 'MODULE_PATHNAME', 'queue_outlives_spi' LANGUAGE c VOLATILE STRICT PARALLEL UNSAFE;
CREATE FUNCTION "quote_ident_rs"("ident" text) RETURNS text AS 'MODULE_PATHNAME', 'quote_ident_rs' LANGUAGE c VOLATILE STRICT PARALLEL UNSAFE;
CREATE FUNCTION "quote_literal_rs"("value" text) RETURNS text AS 'MODULE_PATHNAME', 'quote_literal_rs' LANGUAGE c VOLATILE STRICT PARALLEL UNSAFE;
CREATE FUNCTION "read_as_int4"("sql" text) RETURNS integer AS 'MODULE_PATHNAME', 'read_as_int4' LANGUAGE c VOLATILE STRICT PARALLEL UNSAFE;
CREATE FUNCTION "read_pairs"("sql" text) RETURNS text AS 'MODULE_PATHNAME', 'read_pairs' LANGUAGE c VOLATILE STRICT PARALLEL UNSAFE;
CREATE FUNCTION "registration_errors"() RETURNS text[] AS 'MODULE_PATHNAME', 'registration_errors' LANGUAGE c VOLATILE PARALLEL UNSAFE;
CREATE FUNCTION "remember_my_latch"() RETURNS integer AS 'MODULE_PATHNAME', 'remember_my_latch' LANGUAGE c VOLATILE PARALLEL UNSAFE;
CREATE FUNCTION "rs_longest_final"(internal) RETURNS bigint AS 'MODULE_PATHNAME', 'rs_longest_final' LANGUAGE c VOLATILE STRICT PARALLEL UNSAFE; REVOKE ALL ON FUNCTION "rs_longest_final"(internal) FROM PUBLIC;
CREATE FUNCTION "rs_longest_step"(internal, text) RETURNS internal AS 'MODULE_PATHNAME', 'rs_longest_step' LANGUAGE c VOLATILE PARALLEL UNSAFE; REVOKE ALL ON FUNCTION "rs_longest_step"(internal, text) FROM PUBLIC;
CREATE FUNCTION "rs_sum_squares_combine"(internal, internal) RETURNS internal AS 'MODULE_PATHNAME', 'rs_sum_squares_combine' LANGUAGE c VOLATILE PARALLEL SAFE; REVOKE ALL ON FUNCTION "rs_sum_squares_combine"(internal, internal) FROM PUBLIC;
CREATE FUNCTION "rs_sum_squares_deserialize"(bytea, internal) RETURNS internal AS 'MODULE_PATHNAME', 'rs_sum_squares_deserialize' LANGUAGE c VOLATILE STRICT PARALLEL SAFE; REVOKE ALL ON FUNCTION "rs_sum_squares_deserialize"(bytea, internal) FROM PUBLIC;
CREATE FUNCTION "rs_sum_squares_final"(internal) RETURNS double precision AS 'MODULE_PATHNAME', 'rs_sum_squares_final' LANGUAGE c VOLATILE STRICT PARALLEL SAFE; REVOKE ALL ON FUNCTION "rs_sum_squares_final"(internal) FROM PUBLIC;
CREATE FUNCTION "rs_sum_squares_serialize"(internal) RETURNS bytea AS 'MODULE_PATHNAME', 'rs_sum_squares_serialize' LANGUAGE c VOLATILE STRICT PARALLEL SAFE; REVOKE ALL ON FUNCTION "rs_sum_squares_serialize"(internal) FROM PUBLIC;
CREATE FUNCTION "rs_sum_squares_step"(internal, double precision) RETURNS internal AS 'MODULE_PATHNAME', 'rs_sum_squares_step' LANGUAGE c VOLATILE PARALLEL SAFE; REVOKE ALL ON FUNCTION "rs_sum_squares_step"(internal, double precision) FROM PUBLIC;
CREATE FUNCTION "session_run"("sql" text) RETURNS SETOF record AS 'MODULE_PATHNAME', 'session_run' LANGUAGE c VOLATILE STRICT PARALLEL UNSAFE;
CREATE FUNCTION "session_script"("sqls" text[]) RETURNS SETOF record AS 'MODULE_PATHNAME', 'session_script' LANGUAGE c VOLATILE STRICT PARALLEL UNSAFE;
CREATE FUNCTION "shmem_bump"("by" bigint) RETURNS bigint[] AS 'MODULE_PATHNAME', 'shmem_bump' LANGUAGE c VOLATILE STRICT PARALLEL UNSAFE;
CREATE FUNCTION "shmem_read"() RETURNS bigint[] AS 'MODULE_PATHNAME', 'shmem_read' LANGUAGE c VOLATILE PARALLEL UNSAFE;
CREATE FUNCTION "skip_teardown_in_backend"() RETURNS boolean AS 'MODULE_PATHNAME', 'skip_teardown_in_backend' LANGUAGE c VOLATILE PARALLEL UNSAFE;
CREATE FUNCTION "spi_echo_bool"("value" boolean) RETURNS boolean AS 'MODULE_PATHNAME', 'spi_echo_bool' LANGUAGE c VOLATILE STRICT PARALLEL UNSAFE;
CREATE FUNCTION "spi_echo_bytea"("value" bytea) RETURNS bytea AS 'MODULE_PATHNAME', 'spi_echo_bytea' LANGUAGE c VOLATILE STRICT PARALLEL UNSAFE;
CREATE FUNCTION "spi_echo_float4"("value" real) RETURNS real AS 'MODULE_PATHNAME', 'spi_echo_float4' LANGUAGE c VOLATILE STRICT PARALLEL UNSAFE;
CREATE FUNCTION "spi_echo_float8_array"("value" double precision[]) RETURNS double precision[] AS 'MODULE_PATHNAME', 'spi_echo_float8_array' LANGUAGE c VOLATILE STRICT PARALLEL UNSAFE;
CREATE FUNCTION "spi_echo_float8"("value" double precision) RETURNS double precision AS 'MODULE_PATHNAME', 'spi_echo_float8' LANGUAGE c VOLATILE STRICT PARALLEL UNSAFE;
CREATE FUNCTION "spi_echo_int2"("value" smallint) RETURNS smallint AS 'MODULE_PATHNAME', 'spi_echo_int2' LANGUAGE c VOLATILE STRICT PARALLEL UNSAFE;
CREATE FUNCTION "spi_echo_int4_array"("value" integer[]) RETURNS integer[] AS 'MODULE_PATHNAME', 'spi_echo_int4_array' LANGUAGE c VOLATILE STRICT PARALLEL UNSAFE;
CREATE FUNCTION "spi_echo_int4"("value" integer) RETURNS integer AS 'MODULE_PATHNAME', 'spi_echo_int4' LANGUAGE c VOLATILE STRICT PARALLEL UNSAFE;
CREATE FUNCTION "spi_echo_int8"("value" bigint) RETURNS bigint AS 'MODULE_PATHNAME', 'spi_echo_int8' LANGUAGE c VOLATILE STRICT PARALLEL UNSAFE;
CREATE FUNCTION "spi_echo_nullable_int8"("value" bigint) RETURNS bigint AS 'MODULE_PATHNAME', 'spi_echo_nullable_int8' LANGUAGE c VOLATILE PARALLEL UNSAFE;
CREATE FUNCTION "spi_echo_numeric_array"("value" numeric[]) RETURNS numeric[] AS 'MODULE_PATHNAME', 'spi_echo_numeric_array' LANGUAGE c VOLATILE STRICT PARALLEL UNSAFE;
CREATE FUNCTION "spi_echo_numeric"("value" numeric) RETURNS numeric AS 'MODULE_PATHNAME', 'spi_echo_numeric' LANGUAGE c VOLATILE STRICT PARALLEL UNSAFE;
CREATE FUNCTION "spi_echo_oid"("value" oid) RETURNS oid AS 'MODULE_PATHNAME', 'spi_echo_oid' LANGUAGE c VOLATILE STRICT PARALLEL UNSAFE;
CREATE FUNCTION "spi_echo_text_array"("value" text[]) RETURNS text[] AS 'MODULE_PATHNAME', 'spi_echo_text_array' LANGUAGE c VOLATILE STRICT PARALLEL UNSAFE;
CREATE FUNCTION "spi_echo_text"("value" text) RETURNS text AS 'MODULE_PATHNAME', 'spi_echo_text' LANGUAGE c VOLATILE STRICT PARALLEL UNSAFE;
CREATE FUNCTION "swallow_spi_error"() RETURNS text AS 'MODULE_PATHNAME', 'swallow_spi_error' LANGUAGE c VOLATILE PARALLEL UNSAFE;
CREATE FUNCTION "try_statement"("sql" text) RETURNS text AS 'MODULE_PATHNAME', 'try_statement' LANGUAGE c VOLATILE STRICT PARALLEL UNSAFE;
CREATE FUNCTION "wait_my_latch"("millis" bigint) RETURNS text AS 'MODULE_PATHNAME', 'wait_my_latch' LANGUAGE c VOLATILE STRICT PARALLEL UNSAFE;
CREATE FUNCTION "wake_remembered"() RETURNS boolean AS 'MODULE_PATHNAME', 'wake_remembered' LANGUAGE c VOLATILE PARALLEL UNSAFE;
CREATE AGGREGATE "rs_longest"(text) (SFUNC = "rs_longest_step", STYPE = internal, FINALFUNC = "rs_longest_final", FINALFUNC_MODIFY = READ_WRITE, PARALLEL = UNSAFE);
CREATE AGGREGATE "rs_sum_squares"(double precision) (SFUNC = "rs_sum_squares_step", STYPE = internal, FINALFUNC = "rs_sum_squares_final", FINALFUNC_MODIFY = READ_WRITE, COMBINEFUNC = "rs_sum_squares_combine", SERIALFUNC = "rs_sum_squares_serialize", DESERIALFUNC = "rs_sum_squares_deserialize", PARALLEL = SAFE);

-- Declarations that do not match the Rust function, on purpose: the result type check
-- (tests/soundness/return_type.rs) must refuse them.
CREATE FUNCTION int8_as_text() RETURNS text AS 'MODULE_PATHNAME', 'int8_result' LANGUAGE C;
CREATE FUNCTION int8_as_void() RETURNS void AS 'MODULE_PATHNAME', 'int8_result' LANGUAGE C;

-- Background sessions run SQL as their caller; still, not for everyone.
REVOKE ALL ON FUNCTION session_run(text), session_script(text[]) FROM PUBLIC;
