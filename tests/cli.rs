//! The command line: every bad value fails at startup with exactly one line naming the flag, and
//! `--help` documents every flag with its environment variable.

use std::process::Command;

fn kelp(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kelp"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("run kelp");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_values_fail_with_one_line_naming_the_flag() {
    let cases: [(&[&str], &str); 8] = [
        (&["--listen", "nope"], "--listen"),
        (&["--metrics-listen", "1.2.3"], "--metrics-listen"),
        (&["--max-frame-bytes", "5"], "--max-frame-bytes"),
        (&["--log-format", "xml"], "--log-format"),
        (&["--node-id=-3"], "--node-id"),
        (&["--backend", "nohost"], "--backend"),
        (&["--group-mode", "sometimes"], "--group-mode"),
        (
            &["--topic-metadata-interval-ms", "5"],
            "--topic-metadata-interval-ms",
        ),
    ];
    for (args, flag) in cases {
        let (code, _, stderr) = kelp(args);
        assert_eq!(code, 2, "{args:?}: exit code; stderr {stderr}");
        assert_eq!(
            stderr.trim_end().lines().count(),
            1,
            "{args:?}: not one line: {stderr}"
        );
        assert!(stderr.contains(flag), "{args:?}: {stderr}");
    }
}

#[test]
fn help_documents_every_flag_and_its_env_var() {
    let (code, stdout, _) = kelp(&["--help"]);
    assert_eq!(code, 0);
    for (flag, env) in [
        ("--listen", "KELP_LISTEN"),
        ("--advertised-host", "KELP_ADVERTISED_HOST"),
        ("--backend", "KELP_BACKEND"),
        ("--node-id", "KELP_NODE_ID"),
        ("--max-frame-bytes", "KELP_MAX_FRAME_BYTES"),
        ("--log-format", "KELP_LOG_FORMAT"),
        ("--metrics-listen", "KELP_METRICS_LISTEN"),
        (
            "--group-initial-rebalance-delay-ms",
            "KELP_GROUP_INITIAL_REBALANCE_DELAY_MS",
        ),
        ("--group-max-size", "KELP_GROUP_MAX_SIZE"),
        ("--filer", "KELP_FILER"),
        ("--store-prefix", "KELP_STORE_PREFIX"),
        (
            "--topic-metadata-interval-ms",
            "KELP_TOPIC_METADATA_INTERVAL_MS",
        ),
    ] {
        assert!(stdout.contains(flag), "--help lacks {flag}");
        assert!(stdout.contains(env), "--help lacks {env}");
    }
}

#[test]
fn env_vars_set_flags() {
    let out = Command::new(env!("CARGO_BIN_EXE_kelp"))
        .env("KELP_LISTEN", "not-an-address")
        .output()
        .expect("run kelp");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr.contains("--listen"), "{stderr}");
}
