//! Emits the linker settings a Node.js addon needs (undefined N-API symbols resolve at load time),
//! and compiles the sandbox's init program (`src/isolation/init/main.rs`), which the addon embeds.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    napi_build::setup();
    if let Err(reason) = build_init() {
        panic!("cannot compile the sandbox init program: {reason}");
    }
}

/// Compiles the init program for the crate's target into `$OUT_DIR/mastra-runner-init`.
fn build_init() -> Result<(), String> {
    let source = "src/isolation/init/main.rs";
    println!("cargo:rerun-if-changed=src/isolation/init");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").map_err(|e| e.to_string())?);
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    let target = std::env::var("TARGET").map_err(|e| e.to_string())?;
    let mut command = Command::new(rustc);
    command
        .args(["--edition", "2024", "--crate-type", "bin", "--crate-name"])
        .arg("mastra_runner_init")
        .args([
            "-C",
            "opt-level=2",
            "-C",
            "panic=abort",
            "-C",
            "strip=symbols",
        ])
        .args(["--target", &target])
        .arg("-o")
        .arg(out_dir.join("mastra-runner-init"))
        .arg(source);
    let linker_var = format!(
        "CARGO_TARGET_{}_LINKER",
        target.to_uppercase().replace('-', "_")
    );
    if let Ok(linker) = std::env::var(linker_var) {
        command.arg("-C").arg(format!("linker={linker}"));
    }
    let output = command.output().map_err(|e| e.to_string())?;
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    Ok(())
}
