//! Bad configuration and bad plugins: `weir check` and `weir run` refuse them with every error
//! listed, each naming file:line:column and the route or plugin. The expected messages are
//! written out in full, so any change to them shows up here.

use crate::support::*;

const HEAD: &str = "[[listeners]]\naddress = \"127.0.0.1:1\"\n[upstreams.app]\nendpoints = [\"http://127.0.0.1:9\"]\n";

fn errors(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect()
}

#[test]
fn good_config_checks_ok() {
    let cfg = format!(
        "{HEAD}{}[[routes]]\nname = \"r\"\nupstream = \"app\"\nchain = [{{ plugin = \"api-key\", config = {{ keys = {{ k = \"p\" }} }} }}]\n",
        plugins_toml(&[("api-key", "")])
    );
    let (ok, stderr) = check(&cfg);
    assert!(ok, "{stderr}");
}

#[test]
fn invalid_toml_names_line_and_column() {
    let (ok, stderr) = check("[[listeners]]\naddress = \"127.0.0.1:1\"\nname = \n");
    assert!(!ok);
    assert_eq!(
        errors(&stderr),
        ["error: weir.toml:3:8: invalid string"],
        "{stderr}"
    );
}

#[test]
fn unknown_key_names_line_and_column() {
    let (ok, stderr) = check(&format!(
        "{HEAD}[[routes]]\nname = \"r\"\nupstream = \"app\"\ntimeout = 3\n"
    ));
    assert!(!ok);
    let e = errors(&stderr);
    assert_eq!(e.len(), 1, "{stderr}");
    assert!(
        e[0].starts_with("error: weir.toml:8:1: unknown field `timeout`, expected one of"),
        "{stderr}"
    );
}

#[test]
fn unknown_names_are_all_listed() {
    let cfg = format!(
        "{HEAD}[[routes]]\nname = \"r\"\nupstream = \"nope\"\nchain = [{{ plugin = \"ghost\" }}]\n[[routes]]\nname = \"r\"\nupstream = \"app\"\n"
    );
    let (ok, stderr) = check(&cfg);
    assert!(!ok);
    assert_eq!(
        errors(&stderr),
        [
            "error: weir.toml:7:12: route \"r\": unknown upstream \"nope\" (defined: app)",
            "error: weir.toml:8:21: route \"r\": unknown plugin \"ghost\" (defined: none)",
            "error: weir.toml:10:8: route \"r\": duplicate route name",
        ],
        "{stderr}"
    );
    assert!(stderr.contains("3 error(s)"), "{stderr}");
}

#[test]
fn bad_plugin_files_are_refused_with_reasons() {
    let dir = tempfile::tempdir().expect("tempdir");
    let junk = dir.path().join("junk.wasm");
    std::fs::write(&junk, b"definitely not wasm").expect("write");
    let core = dir.path().join("core.wasm");
    std::fs::write(&core, wat::parse_str("(module)").expect("wat")).expect("write");
    let empty = dir.path().join("empty.wasm");
    std::fs::write(&empty, wat::parse_str("(component)").expect("wat")).expect("write");
    let missing = dir.path().join("missing.wasm");
    let cfg = format!(
        "{HEAD}[plugins.junk]\npath = {:?}\n[plugins.core]\npath = {:?}\n[plugins.empty]\npath = {:?}\n[plugins.missing]\npath = {:?}\n[[routes]]\nname = \"r\"\nupstream = \"app\"\n",
        junk.display().to_string(),
        core.display().to_string(),
        empty.display().to_string(),
        missing.display().to_string(),
    );
    let (ok, stderr) = check(&cfg);
    assert!(!ok);
    let e = errors(&stderr);
    assert_eq!(e.len(), 4, "{stderr}");
    // Plugins are reported in name order.
    assert!(
        e[0].starts_with("error: weir.toml:8:8: plugin \"core\": ")
            && e[0].contains("is not a Wasm component"),
        "{stderr}"
    );
    assert!(
        e[1].starts_with("error: weir.toml:10:8: plugin \"empty\": ")
            && e[1].contains("does not implement the weir:plugin/plugin@0.2.0 world"),
        "{stderr}"
    );
    assert!(
        e[2].starts_with("error: weir.toml:6:8: plugin \"junk\": ")
            && e[2].contains("no Wasm header"),
        "{stderr}"
    );
    assert!(
        e[3].starts_with("error: weir.toml:12:8: plugin \"missing\": cannot read"),
        "{stderr}"
    );
}

#[test]
fn plugin_rejecting_its_config_names_route_and_plugin() {
    let cfg = format!(
        "{HEAD}{}[[routes]]\nname = \"login\"\nupstream = \"app\"\nchain = [\n  {{ plugin = \"api-key\", config = {{ keys = {{}} }} }},\n  {{ plugin = \"api-key\", config = {{ kyes = {{ a = \"b\" }} }} }},\n  {{ plugin = \"probe\", config = {{ reject = \"no thanks\" }} }},\n]\n",
        plugins_toml(&[("api-key", ""), ("probe", "")])
    );
    let (ok, stderr) = check(&cfg);
    assert!(!ok);
    let e = errors(&stderr);
    assert_eq!(
        e,
        [
            "error: weir.toml:15:3: route \"login\": plugin \"api-key\": rejected its config: `keys` is empty: no request could ever pass",
            "error: weir.toml:16:3: route \"login\": plugin \"api-key\": rejected its config: invalid config: unknown field `kyes`, expected one of `keys`, `header`, `allow_bearer`, `forward_key`, `realm`",
            "error: weir.toml:17:3: route \"login\": plugin \"probe\": rejected its config: no thanks",
        ],
        "{stderr}"
    );
}

#[test]
fn run_refuses_a_broken_config_and_exits_non_zero() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("weir.toml");
    std::fs::write(
        &path,
        format!("{HEAD}[[routes]]\nname = \"r\"\nupstream = \"nope\"\n"),
    )
    .expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["run", "--config"])
        .arg(&path)
        .output()
        .expect("run weir");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("route \"r\": unknown upstream \"nope\""),
        "{stderr}"
    );
}

#[test]
fn the_quickstart_config_stays_valid() {
    plugin_dir();
    let path = repo_root().join("examples/quickstart/weir.toml");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .expect("run weir check");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
