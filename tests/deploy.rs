//! Kubernetes packaging (Dockerfile, deploy/, helm/kelp), validated offline by
//! `scripts/validate-deploy`: one test per check, so a failure names what drifted or broke. The first
//! run installs helm, kubernetes-validate and hadolint into the per-user cache (the script takes a
//! lock, so the tests can start together); later runs reuse them and need no network.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

fn validate(check: &str) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let script = root.join("scripts/validate-deploy");
    let started = Instant::now();
    let output = Command::new("bash")
        .arg(&script)
        .arg(check)
        .current_dir(root)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    // Shown by the test harness only when the test fails (or with --nocapture).
    println!(
        "$ scripts/validate-deploy {check}   ({:.1} s)\n{stdout}{stderr}",
        started.elapsed().as_secs_f64()
    );
    assert!(
        output.status.success(),
        "scripts/validate-deploy {check} failed ({}):\n{stdout}{stderr}",
        output.status
    );
}

/// helm/kelp/files/ holds exact copies of deploy/prometheus/kelp-rules.yaml and dashboards/*.json.
#[test]
fn chart_copies_of_alert_rules_and_dashboards_are_current() {
    validate("copies");
}

/// helm lint --strict and helm template: default values, every helm/kelp/ci/*-values.yaml, and an
/// app chart that includes the sidecar; values.schema.json refuses bad values.
#[test]
fn helm_chart_lints_and_renders_for_every_values_file() {
    validate("lint");
}

/// Every rendering and deploy/kubernetes/ pass strict Kubernetes (1.29, 1.37) and CRD schemas, and
/// the validator rejects known-bad manifests.
#[test]
fn rendered_and_static_manifests_pass_kubernetes_schemas() {
    validate("schema");
}

/// Sidecar lifecycle, probes, hardening, peer Service, ConfigMap, NetworkPolicy and PodMonitor fit
/// together in every rendering and in deploy/kubernetes/; peer mode has its filer, its own address
/// ($(POD_IP) from the downward API) and peer TLS files all or none, on a Secret volume.
#[test]
fn sidecar_is_wired_to_its_service_config_policy_and_monitor() {
    validate("wiring");
}

/// The chart rendered with helm/kelp/ci/example-values.yaml describes exactly the resources of
/// deploy/kubernetes/ (drift test); with helm/kelp/ci/peer-tls-values.yaml on top, exactly
/// deploy/kubernetes/ with its commented-out "peer mTLS" blocks turned on.
#[test]
fn chart_renders_the_static_example_manifests() {
    validate("drift");
}

/// hadolint, and a runtime stage that needs no shell and runs as a numeric non-root user.
#[test]
fn dockerfile_is_multi_stage_non_root_and_shell_free() {
    validate("dockerfile");
}
