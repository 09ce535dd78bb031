//! The Kubernetes deployment: the Helm chart rendered by a real Helm (the Helm Go SDK, through
//! the `helm-python-sdk` package) for three value sets, every manifest validated against the
//! Kubernetes 1.37 schemas, and each rendered gateway config accepted by `weir check`; the plain
//! manifests likewise. The checks live in `tests/deploy/check_manifests.py`.

#[test]
fn the_helm_chart_and_plain_manifests_render_validate_and_configure_a_working_gateway() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = std::process::Command::new("python3")
        .arg(root.join("tests/deploy/check_manifests.py"))
        .arg(env!("CARGO_BIN_EXE_weir"))
        .arg(&root)
        .output()
        .expect("run python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    // Every rendering was checked, not skipped.
    for check in [
        "helm lint",
        "default values",
        "production values",
        "trial values",
        "invalid values",
        "plain manifests",
    ] {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with(check) && l.ends_with(": ok")),
            "{check} not checked:\n{stdout}"
        );
    }
}
