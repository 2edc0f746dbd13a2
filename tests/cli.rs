//! The `tenantpool` command as a user runs it: `--check`, and `demo` end to end.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_tenantpool");

#[test]
fn check_accepts_the_example_config() {
    let out = Command::new(BIN)
        .args(["--config", "config/tenantpool.toml", "--check"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("configuration is valid"));
}

#[test]
fn check_names_file_and_key_of_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[databases.app]\nuser = \"app\"\npool_size = 0\n").unwrap();
    let out = Command::new(BIN)
        .args(["--check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml") && err.contains("databases.app.pool_size"),
        "{err}"
    );
}

/// The README's first command, as a newcomer runs it (on a free port).
#[test]
fn demo_prints_urls_that_show_each_tenant_its_rows() {
    let mut child = Command::new(BIN)
        .args(["demo", "--port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut urls = Vec::new();
    let mut pg_port = None;
    while urls.len() < 2 {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("demo printed its URLs in time");
        if let Some(start) = line.find("'postgres://") {
            let url = &line[start + 1..];
            urls.push(url[..url.find('\'').unwrap()].to_owned());
        }
        if let Some(i) = line.find(") on port ") {
            let rest = &line[i + 10..];
            pg_port = rest[..rest.find(',').unwrap()].parse::<u16>().ok();
        }
    }
    let psql = |url: &str| {
        let out = Command::new("psql")
            .args(["-X", "-A", "-t", url, "-c", "select tenant_id from items"])
            .output()
            .expect("psql runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let acme = psql(&urls[0]);
    assert_eq!(acme.lines().collect::<Vec<_>>(), ["acme"; 3], "{acme}");
    let globex = psql(&urls[1]);
    assert_eq!(
        globex.lines().collect::<Vec<_>>(),
        ["globex"; 2],
        "{globex}"
    );

    // Ctrl-C stops the pooler and removes the cluster.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "demo did not exit after SIGINT");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success());
    let port = pg_port.expect("demo printed the PostgreSQL port");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the demo's PostgreSQL is still running"
    );
}
