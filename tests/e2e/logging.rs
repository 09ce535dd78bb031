//! The diagnostic log as an operator's tools see it: written to a file or a pipe, it carries no
//! terminal colour codes (which would corrupt log shippers' parsing and `grep`).

use crate::support::free_port;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn log_lines_to_a_file_carry_no_colour_codes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let config = dir.path().join("weir.toml");
    std::fs::write(
        &config,
        format!(
            "[[listeners]]\naddress = \"127.0.0.1:{port}\"\n\n[[routes]]\nname = \"r\"\nchain = []\nupstream = \"u\"\n\n[upstreams.u]\nendpoints = [\"http://127.0.0.1:9\"]\n"
        ),
    )
    .expect("write config");
    let log = dir.path().join("weir.log");
    // NO_COLOR unset on purpose: the gateway must decide by itself that a file is no terminal.
    let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["run", "--config"])
        .arg(&config)
        .env_remove("NO_COLOR")
        .env("WEIR_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("spawn weir");
    // Wait for the event (a line saying it listens), with a deadline that only guards a hang.
    let deadline = Instant::now() + Duration::from_secs(90);
    let text = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("listening") {
            break text;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("weir exited with {status}:\n{text}");
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for the log:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        !text.contains('\u{1b}'),
        "ANSI escape codes in a log file:\n{text:?}"
    );
    assert!(
        text.contains("listener="),
        "fields are still written: {text}"
    );
}
