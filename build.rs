//! Records the compiler for the environment every benchmark result carries
//! (see `src/harness/env.rs`; the commit is asked of git at run time, so the
//! build itself never needs git).

use std::process::Command;

fn main() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let version = Command::new(&rustc)
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map_or_else(|| "unknown".into(), |o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    println!("cargo:rustc-env=FASTWIRE_RUSTC={version}");
    println!("cargo:rerun-if-changed=build.rs");
}
