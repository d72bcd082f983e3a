//! The fuzz targets' smoke run, on stable and without libFuzzer: every target body (`fuzz/src`,
//! included by path) runs over its built-in seeds, the checked-in corpus (`fuzz/corpus/<target>`),
//! the inputs that once broke kelp (`fuzz/regressions/<target>`), and a fixed set of
//! pseudo-random inputs. A panic here is a broken invariant; the input's file is named.
//! The real fuzzing is `scripts/fuzz` (nightly, cargo-fuzz).

#[allow(dead_code)]
#[path = "../fuzz/src/lib.rs"]
mod fuzz_bodies;

use std::path::{Path, PathBuf};

/// Pseudo-random inputs per target on every run (deterministic).
const NOISE_INPUTS: u64 = 200;

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

fn run_one(target: &str, name: &str, data: &[u8]) {
    let result = std::panic::catch_unwind(|| fuzz_bodies::run(target, data));
    if let Err(panic) = result {
        let msg = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        panic!("fuzz target {target} failed on {name}: {msg}");
    }
}

fn smoke(target: &str) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut count = 0;
    for (t, name, data) in fuzz_bodies::seeds::all() {
        if t == target {
            run_one(target, &format!("seed {name}"), &data);
            count += 1;
        }
    }
    for dir in ["corpus", "regressions"] {
        for path in files(&root.join(dir).join(target)) {
            let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            run_one(target, &path.display().to_string(), &data);
            count += 1;
        }
    }
    for n in 0..NOISE_INPUTS {
        let len = 1 + (n as usize * 37) % 700;
        let data = fuzz_bodies::seeds::noise(n * 7919 + target.len() as u64, len);
        run_one(target, &format!("noise #{n}"), &data);
        count += 1;
    }
    eprintln!("fuzz smoke: {target}: {count} inputs");
    count
}

#[test]
fn every_target_has_a_smoke_run() {
    assert_eq!(
        fuzz_bodies::TARGETS,
        ["frame", "requests", "rewrite", "sequence"]
    );
}

#[test]
fn frame() {
    assert!(smoke("frame") > NOISE_INPUTS as usize);
}

#[test]
fn requests() {
    assert!(smoke("requests") > NOISE_INPUTS as usize);
}

#[test]
fn rewrite() {
    assert!(smoke("rewrite") > NOISE_INPUTS as usize);
}

#[test]
fn sequence() {
    assert!(smoke("sequence") > NOISE_INPUTS as usize);
}

/// `scripts/fuzz --seed`: writes the built-in seeds into `fuzz/corpus/<target>/seed-<name>`.
#[test]
#[ignore]
fn write_seeds() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join("corpus");
    for (target, name, data) in fuzz_bodies::seeds::all() {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("seed-{name}")), data).unwrap();
    }
}
