//! `weir plugin new | build | test` in every SDK language: a new plugin builds and passes its
//! generated smoke test through a real gateway, and the tools fail clearly on bad input.

use crate::support::*;

/// Scaffolds `lang`, then runs `weir plugin test` on it.
fn new_plugin_passes_its_smoke_test(lang: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let plugin = dir.path().join(format!("hello-{lang}"));
    let out = weir_command()
        .args([
            "plugin",
            "new",
            "--lang",
            lang,
            &format!("hello-{lang}"),
            "--dir",
        ])
        .arg(&plugin)
        .output()
        .expect("run weir plugin new");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(plugin.join("weir-plugin.toml").exists());
    assert!(plugin.join("smoke.toml").exists());

    let out = weir_command()
        .args(["plugin", "test"])
        .arg(&plugin)
        .output()
        .expect("run weir plugin test");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{lang}:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("ok      passes and marks the request"),
        "{stdout}"
    );
    assert!(
        stdout.contains("ok      blocks a request with x-block"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("hello-{lang}: 2 smoke cases passed")),
        "{stdout}"
    );
    assert!(plugin.join(format!("hello-{lang}.wasm")).exists());

    // The smoke test really checks: a case the plugin does not satisfy fails it.
    let smoke = std::fs::read_to_string(plugin.join("smoke.toml")).expect("smoke.toml");
    std::fs::write(
        plugin.join("smoke.toml"),
        smoke.replace("status = 403", "status = 418"),
    )
    .expect("write smoke.toml");
    let out = weir_command()
        .args(["plugin", "test"])
        .arg(&plugin)
        .output()
        .expect("run weir plugin test");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(
        stdout
            .contains("FAILED  blocks a request with x-block: status 403 Forbidden (expected 418)"),
        "{stdout}"
    );
}

#[test]
fn rust_plugin_from_new_passes_its_smoke_test() {
    new_plugin_passes_its_smoke_test("rust");
}

#[test]
fn python_plugin_from_new_passes_its_smoke_test() {
    new_plugin_passes_its_smoke_test("python");
}

#[test]
fn js_plugin_from_new_passes_its_smoke_test() {
    new_plugin_passes_its_smoke_test("js");
}

#[test]
fn c_plugin_from_new_passes_its_smoke_test() {
    new_plugin_passes_its_smoke_test("c");
}

#[test]
fn authoring_tools_explain_what_is_wrong() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = |args: &[&str]| {
        let out = weir_command().args(args).output().expect("run weir");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let path = |p: &str| dir.path().join(p).display().to_string();

    let (ok, err) = run(&[
        "plugin",
        "new",
        "--lang",
        "python",
        "Bad_Name",
        "--dir",
        &path("x"),
    ]);
    assert!(!ok);
    assert!(err.contains("invalid plugin name \"Bad_Name\""), "{err}");

    let (ok, err) = run(&["plugin", "build", &path("nowhere")]);
    assert!(!ok);
    assert!(
        err.contains("weir-plugin.toml") && err.contains("weir plugin new"),
        "{err}"
    );

    std::fs::create_dir_all(dir.path().join("bad")).expect("mkdir");
    std::fs::write(
        dir.path().join("bad/weir-plugin.toml"),
        "name = \"bad\"\nlanguage = \"cobol\"\n",
    )
    .expect("write");
    let (ok, err) = run(&["plugin", "build", &path("bad")]);
    assert!(!ok);
    assert!(
        err.contains("weir-plugin.toml:2:12: unknown variant `cobol`"),
        "{err}"
    );

    // A toolchain that is not installed is named with the command that installs it.
    let (ok, _) = run(&[
        "plugin",
        "new",
        "--lang",
        "python",
        "p",
        "--dir",
        &path("p"),
    ]);
    assert!(ok);
    let out = weir_command()
        .args(["plugin", "build", &path("p")])
        .env("PATH", "/nonexistent")
        .env("WEIR_TOOLS", "/nonexistent")
        .output()
        .expect("run weir");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(
            "componentize-py not found; install it with: pip install componentize-py==0.25.1"
        ),
        "{err}"
    );

    // An existing directory is never overwritten.
    let (ok, err) = run(&["plugin", "new", "--lang", "js", "p", "--dir", &path("p")]);
    assert!(!ok);
    assert!(err.contains("already exists and is not empty"), "{err}");
}
