//! Issue 9, item 1: ALPS works on a user's table as that table's owner, in a
//! security-restricted operation, and its own SQL cannot be captured by look-alike functions
//! or operators. A hostile owner gains nothing.

use std::time::Duration;

use bgworker_tests::{example, run_extension_script, Cluster};
use postgres::Client;

const WAIT: Duration = Duration::from_secs(90);

/// The owner's code: logs who runs it, then tries to become superuser and to create a
/// superuser, swallowing the failures so that ALPS's statement succeeds.
const HOSTILE_OWNER: &str = r#"
CREATE ROLE evil LOGIN;
GRANT CREATE ON SCHEMA public TO evil;  -- PostgreSQL 14's default for PUBLIC
CREATE SCHEMA evil_s AUTHORIZATION evil;
SET ROLE evil;
CREATE TABLE public.evil_log (who text, what text);
GRANT ALL ON public.evil_log TO PUBLIC;
CREATE FUNCTION public.escalate(what text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.evil_log VALUES (current_user, what);
    BEGIN
        ALTER ROLE evil SUPERUSER;
    EXCEPTION WHEN OTHERS THEN NULL;
    END;
    BEGIN
        CREATE ROLE evil_minion SUPERUSER;
    EXCEPTION WHEN OTHERS THEN NULL;
    END;
    RETURN true;
END $$;
CREATE FUNCTION public.trig() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM public.escalate('trigger');
    RETURN NEW;
END $$;
CREATE FUNCTION public.idx(float8) RETURNS float8 IMMUTABLE LANGUAGE plpgsql AS $$
BEGIN
    PERFORM public.escalate('index');
    RETURN $1;
END $$;
CREATE FUNCTION public.raise_it(float8) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.evil_log VALUES (current_user, 'raising');
    ALTER ROLE evil SUPERUSER;
    RETURN true;
END $$;
-- Look-alikes of what ALPS's catalog queries call, winning on exact argument types.
CREATE FUNCTION public.right(name, integer) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    PERFORM public.escalate('right');
    RETURN pg_catalog.right($1::text, $2);
END $$;
CREATE FUNCTION public.oid_is(oid, regtype) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    PERFORM public.escalate('operator');
    RETURN $1 OPERATOR(pg_catalog.=) $2::oid;
END $$;
CREATE OPERATOR public.= (LEFTARG = oid, RIGHTARG = regtype, FUNCTION = public.oid_is);

CREATE TABLE evil_s.checked (a float8, b float8 CHECK (public.escalate('check')));
CREATE TABLE evil_s.triggered (a float8, b float8);
CREATE TRIGGER t BEFORE UPDATE ON evil_s.triggered FOR EACH ROW EXECUTE FUNCTION public.trig();
ALTER TABLE evil_s.triggered ENABLE ALWAYS TRIGGER t;
CREATE TABLE evil_s.indexed (a float8, b float8, b__predicted float8);
CREATE INDEX ON evil_s.indexed (public.idx(b__predicted));
CREATE TABLE evil_s.raising (a float8, b float8, a__predicted float8
    CHECK (a__predicted IS NULL OR public.raise_it(a__predicted)));
INSERT INTO evil_s.checked SELECT g, 2 * g + (g % 3) FROM generate_series(1, 30) g;
INSERT INTO evil_s.triggered SELECT g, 2 * g + (g % 3) FROM generate_series(1, 30) g;
INSERT INTO evil_s.indexed SELECT g, 2 * g + (g % 3) FROM generate_series(1, 30) g;
INSERT INTO evil_s.raising SELECT g, 2 * g + (g % 3) FROM generate_series(1, 30) g;
RESET ROLE;
CREATE TABLE public.good (x float8, y float8);
INSERT INTO public.good SELECT g, 3 * g - (g % 4) FROM generate_series(1, 30) g;
TRUNCATE public.evil_log;
"#;

/// How many rows of `table` have a prediction of `column` (0 before ALPS added the column).
fn predicted(client: &mut Client, table: &str, column: &str) -> i64 {
    let exists: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = $1::text::regclass AND attname = $2)",
            &[&table, &format!("{column}__predicted")],
        )
        .unwrap()
        .get(0);
    if !exists {
        return 0;
    }
    client
        .query_one(
            &format!("SELECT count({column}__predicted) FROM {table}"),
            &[],
        )
        .unwrap()
        .get(0)
}

#[test]
fn a_hostile_table_owner_gains_nothing_and_the_other_tables_are_served() {
    let cluster = Cluster::builder()
        .preload(example("alps"))
        .setting("alps.naptime", "1")
        .setting("alps.lock_timeout", "500ms")
        .start();
    cluster.wait_for_log("alps started in database \"postgres\"", WAIT);
    let mut client = cluster.connect();
    run_extension_script(&mut client, "alps");
    client.batch_execute(HOSTILE_OWNER).unwrap();
    // (The raising table's CHECK fails only for the predictions ALPS writes.)
    client
        .batch_execute(
            "ANALYZE evil_s.checked, evil_s.triggered, evil_s.indexed, evil_s.raising, public.good",
        )
        .unwrap();
    let served = cluster.poll(WAIT, || {
        predicted(&mut client, "evil_s.checked", "b") == 30
            && predicted(&mut client, "evil_s.triggered", "b") == 30
            && predicted(&mut client, "evil_s.indexed", "b") == 30
            && predicted(&mut client, "public.good", "y") == 30
            && cluster
                .log()
                .contains("alps: skipping table evil_s.raising")
    });
    assert!(served, "not every table was served:\n{}", cluster.log());

    let superuser: bool = client
        .query_one("SELECT rolsuper FROM pg_roles WHERE rolname = 'evil'", &[])
        .unwrap()
        .get(0);
    assert!(!superuser, "the owner became superuser");
    let minions: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_roles WHERE rolname = 'evil_minion'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(minions, 0, "a superuser role was created");
    let runs: Vec<(String, String)> = client
        .query(
            "SELECT DISTINCT who, what FROM public.evil_log ORDER BY 1, 2",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    // The owner's code ran, as the owner, for ALPS's reads and writes; the look-alikes of
    // system functions and operators never ran at all.
    for (who, what) in &runs {
        assert_eq!(who, "evil", "{what} ran as {who}: {runs:?}");
        assert!(what != "right" && what != "operator", "{runs:?}");
    }
    // (The raising table's log row was rolled back with ALPS's failed write.)
    for what in ["check", "trigger", "index"] {
        assert!(
            runs.iter().any(|(_, w)| w == what),
            "{what} never ran: {runs:?}"
        );
    }
    // One clear line names the table ALPS could not write and why.
    let log = cluster.log();
    let line = log
        .lines()
        .find(|l| l.contains("alps: skipping table evil_s.raising"))
        .unwrap();
    assert!(line.contains("42501"), "{line}");
    cluster.assert_no_crash();
}
