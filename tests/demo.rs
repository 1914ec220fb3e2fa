//! `make demo`: a throwaway cluster with the examples loaded, showing what they do.

use std::time::Duration;

use bgworker_tests::{example, Cluster};

fn main() {
    println!("Starting a throwaway PostgreSQL cluster with hello_world preloaded...");
    let cluster = Cluster::builder()
        .preload(example("hello_world"))
        .setting("hello_world.naptime", "2")
        .start();
    println!(
        "  port {}, data in {}\n",
        cluster.port(),
        cluster.data_dir().display()
    );

    cluster.wait_for_log("Hello World!", Duration::from_secs(30));
    let mut client = cluster.connect();
    println!("SELECT pid, backend_type, application_name FROM pg_stat_activity WHERE backend_type = 'hello_world';");
    for row in client
        .query(
            "SELECT pid, backend_type, application_name FROM pg_stat_activity WHERE backend_type = 'hello_world'",
            &[],
        )
        .expect("query pg_stat_activity")
    {
        let (pid, kind, app): (i32, String, String) = (row.get(0), row.get(1), row.get(2));
        println!("  pid {pid} | {kind} | {app}");
    }

    println!(
        "\nThe worker greets every 2 seconds; changing hello_world.naptime to 1 with a reload:"
    );
    client
        .batch_execute("ALTER SYSTEM SET hello_world.naptime = 1")
        .unwrap();
    client.batch_execute("SELECT pg_reload_conf()").unwrap();
    std::thread::sleep(Duration::from_secs(4));
    for line in cluster.log().lines().filter(|l| l.contains("hello_world:")) {
        println!("  {line}");
    }
    println!("\nStopping and removing the cluster.");
}
