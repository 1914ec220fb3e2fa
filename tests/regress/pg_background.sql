-- pg_background's own regression checks (sql/pg_background.sql of vibhorkum/pg_background,
-- version 1.8), written again for the background example: the same statements in the same
-- order, with the same expected results. Only the first line differs: the test harness
-- runs the extension's script (as CREATE EXTENSION background would) before this file.
-- CREATE EXTENSION background;

DROP TABLE IF EXISTS t;
CREATE TABLE t(id integer);

-- v1: a launched INSERT, read back as its command tag
SELECT pg_background_launch('INSERT INTO t SELECT 1') AS pid \gset
SELECT * FROM pg_background_result(:pid) AS (result TEXT);
SELECT * FROM t ORDER BY id;

-- v1: detaching is harmless
SELECT pg_background_launch('SELECT 1') AS pid \gset
SELECT pg_background_detach(:pid);

-- v2: a detached job still commits
SELECT (h).pid AS v2_pid, (h).cookie AS v2_cookie
FROM (SELECT pg_background_launch_v2('INSERT INTO t SELECT 2', 65536) AS h) s
\gset
SELECT pg_sleep(0.2);
SELECT pg_background_detach_v2(:v2_pid, :v2_cookie);
SELECT pg_sleep(0.5);
SELECT * FROM t ORDER BY id;

-- v2: a cancel during the sleep keeps the INSERT after it from committing
SELECT (h).pid AS c_pid, (h).cookie AS c_cookie
FROM (SELECT pg_background_launch_v2('SELECT pg_sleep(10); INSERT INTO t SELECT 99', 65536) AS h) s
\gset
SELECT pg_sleep(0.2);
SELECT pg_background_cancel_v2(:c_pid, :c_cookie);
SELECT pg_sleep(0.5);
SELECT count(*) AS canceled_insert_count FROM t WHERE id = 99;

-- detach is not cancel, in either API
DROP TABLE IF EXISTS t_detach_v1;
CREATE TABLE t_detach_v1(id int);
SELECT pg_background_detach(
  pg_background_launch('INSERT INTO t_detach_v1 SELECT 1', 65536)
);
SELECT pg_sleep(0.2);
SELECT count(*) FROM t_detach_v1;

DROP TABLE IF EXISTS t_detach_v2;
CREATE TABLE t_detach_v2(id int);
DO $$
DECLARE h public.pg_background_handle;
BEGIN
  SELECT * INTO h FROM pg_background_launch_v2('INSERT INTO t_detach_v2 SELECT 1', 65536);
  PERFORM pg_background_detach_v2(h.pid, h.cookie);
END;
$$;
SELECT pg_sleep(0.2);
SELECT count(*) FROM t_detach_v2;

-- wait_v2_timeout: too short, then long enough
DROP TABLE IF EXISTS t_wait;
CREATE TABLE t_wait(id int);
DO $$
DECLARE h public.pg_background_handle;
DECLARE ok bool;
BEGIN
  SELECT * INTO h
  FROM pg_background_launch_v2('SELECT pg_sleep(2); INSERT INTO t_wait VALUES (1)', 65536);
  ok := pg_background_wait_v2_timeout(h.pid, h.cookie, 200);
  RAISE NOTICE 'wait_short=%', ok;
  ok := pg_background_wait_v2_timeout(h.pid, h.cookie, 5000);
  RAISE NOTICE 'wait_long=%', ok;
  PERFORM pg_background_detach_v2(h.pid, h.cookie);
END;
$$;
SELECT count(*) FROM t_wait;

-- cancel_v2_grace keeps the INSERT from running
DROP TABLE IF EXISTS t_cancel;
CREATE TABLE t_cancel(id int);
DO $$
DECLARE h public.pg_background_handle;
BEGIN
  SELECT * INTO h
  FROM pg_background_launch_v2('SELECT pg_sleep(5); INSERT INTO t_cancel VALUES (1)', 65536);
  PERFORM pg_background_cancel_v2_grace(h.pid, h.cookie, 500);
  PERFORM pg_sleep(0.5);
  PERFORM pg_background_detach_v2(h.pid, h.cookie);
END;
$$;
SELECT count(*) FROM t_cancel;

-- list_v2 shows a running job, and not after its detach
SELECT (h).pid AS l_pid, (h).cookie AS l_cookie
FROM (SELECT pg_background_launch_v2('SELECT pg_sleep(2)', 65536) AS h) s
\gset
SELECT pg_sleep(0.1);
SELECT COUNT(*) AS  list_contains_launched_job
FROM pg_background_list_v2()
  AS (pid int4, cookie int8, launched_at timestamptz, user_id oid,
      queue_size int4, state text, sql_preview text, last_error text, consumed bool)
WHERE pid = :l_pid
  AND cookie = :l_cookie
  AND queue_size = 65536
  AND user_id IS NOT NULL
  AND launched_at IS NOT NULL
  AND state IN ('starting', 'running', 'stopped', 'canceled');
SELECT pg_background_cancel_v2(:l_pid, :l_cookie);
SELECT pg_background_detach_v2(:l_pid, :l_cookie);
SELECT COUNT(*) AS list_contains_after_detach
FROM pg_background_list_v2()
  AS (pid int4, cookie int8, launched_at timestamptz, user_id oid,
      queue_size int4, state text, sql_preview text, last_error text, consumed bool)
WHERE pid = :l_pid
  AND cookie = :l_cookie;

-- submit_v2: fire and forget, and it commits
DROP TABLE IF EXISTS t_submit;
CREATE TABLE t_submit(id int);
SELECT (h).pid AS s_pid, (h).cookie AS s_cookie
FROM (SELECT pg_background_submit_v2('INSERT INTO t_submit VALUES (1)', 65536) AS h) s
\gset
SELECT pg_sleep(0.2);
SELECT count(*) AS submit_count FROM t_submit;

-- wait_v2_timeout, then wait_v2 on a finished job
DROP TABLE IF EXISTS t_wait2;
CREATE TABLE t_wait2(id int);
SELECT (h).pid AS w_pid, (h).cookie AS w_cookie
FROM (SELECT pg_background_launch_v2('SELECT pg_sleep(1); INSERT INTO t_wait2 VALUES (1)', 65536) AS h) s
\gset
SELECT pg_background_wait_v2_timeout(:w_pid, :w_cookie, 50) AS wait_short;
SELECT pg_background_wait_v2_timeout(:w_pid, :w_cookie, 5000) AS wait_long;
SELECT pg_background_wait_v2(:w_pid, :w_cookie);
SELECT pg_background_detach_v2(:w_pid, :w_cookie);
SELECT count(*) AS wait2_count FROM t_wait2;

-- cancel_v2_grace during the sleep
DROP TABLE IF EXISTS t_cancel2;
CREATE TABLE t_cancel2(id int);
SELECT (h).pid AS cx_pid, (h).cookie AS cx_cookie
FROM (SELECT pg_background_launch_v2('SELECT pg_sleep(10); INSERT INTO t_cancel2 VALUES (1)', 65536) AS h) s
\gset
SELECT pg_sleep(0.2);
SELECT pg_background_cancel_v2_grace(:cx_pid, :cx_cookie, 500);
SELECT pg_sleep(0.5);
SELECT pg_background_detach_v2(:cx_pid, :cx_cookie);
SELECT count(*) AS cancel2_count FROM t_cancel2;

-- detaching every finished job that list_v2 shows leaves none
DO $$
DECLARE r record;
BEGIN
  FOR r IN
    SELECT *
    FROM pg_background_list_v2()
      AS (pid int4, cookie int8, launched_at timestamptz, user_id oid,
          queue_size int4, state text, sql_preview text, last_error text, consumed bool)
    WHERE state IN ('stopped',  'canceled')
  LOOP
    PERFORM pg_background_detach_v2(r.pid, r.cookie);
  END LOOP;
END $$;
SELECT *
FROM pg_background_list_v2()
  AS (pid int4, cookie int8, launched_at timestamptz, user_id oid,
      queue_size int4, state text, sql_preview text, last_error text, consumed bool);

-- settings
SHOW pg_background.max_workers;
SHOW pg_background.default_queue_size;
SHOW pg_background.worker_timeout;
SET pg_background.max_workers = 2;
SHOW pg_background.max_workers;
RESET pg_background.max_workers;

-- stats_v2 has every field
SELECT
  workers_launched > 0 AS has_launched,
  workers_completed >= 0 AS has_completed_field,
  workers_failed >= 0 AS has_failed_field,
  workers_canceled >= 0 AS has_canceled_field,
  workers_active >= 0 AS has_active_field,
  avg_execution_ms >= 0 AS has_avg_time,
  max_workers > 0 AS has_max_workers
FROM pg_background_stats_v2();

-- progress reported from the job's SQL
DROP TABLE IF EXISTS t_progress;
CREATE TABLE t_progress(id int);
SELECT (h).pid AS p_pid, (h).cookie AS p_cookie
FROM (SELECT pg_background_launch_v2($$
  SELECT pg_background_progress(0, 'Starting');
  SELECT pg_sleep(0.1);
  SELECT pg_background_progress(50, 'Halfway');
  SELECT pg_sleep(0.1);
  SELECT pg_background_progress(100, 'Done');
  INSERT INTO t_progress VALUES (1);
$$, 65536) AS h) s
\gset
SELECT pg_sleep(0.15);
SELECT
  CASE WHEN progress_pct >= 0 THEN 'progress_reported' ELSE 'no_progress' END AS progress_status
FROM pg_background_get_progress_v2(:p_pid, :p_cookie);
SELECT pg_background_wait_v2_timeout(:p_pid, :p_cookie, 5000) AS progress_worker_done;
SELECT count(*) AS progress_insert_count FROM t_progress;
SELECT pg_background_detach_v2(:p_pid, :p_cookie);

-- max_workers limits one session's attached workers
SET pg_background.max_workers = 1;
SELECT (h).pid AS mw_pid, (h).cookie AS mw_cookie
FROM (SELECT pg_background_launch_v2('SELECT pg_sleep(2)', 65536) AS h) s
\gset
SELECT pg_sleep(0.1);
DO $$
BEGIN
  PERFORM pg_background_launch_v2('SELECT 1', 65536);
  RAISE NOTICE 'max_workers_test=should_have_failed';
EXCEPTION WHEN OTHERS THEN
  RAISE NOTICE 'max_workers_test=correctly_limited';
END;
$$;
SELECT pg_background_cancel_v2(:mw_pid, :mw_cookie);
SELECT pg_sleep(0.2);
SELECT pg_background_detach_v2(:mw_pid, :mw_cookie);
RESET pg_background.max_workers;

-- worker_timeout takes a duration
SET pg_background.worker_timeout = '1s';
SHOW pg_background.worker_timeout;
RESET pg_background.worker_timeout;

-- what the session's jobs came to
SELECT
  workers_launched AS total_launched,
  workers_completed AS total_completed,
  workers_failed AS total_failed,
  workers_canceled AS total_canceled,
  workers_active AS currently_active
FROM pg_background_stats_v2();
