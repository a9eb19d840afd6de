//! Embeds the default content pack (`content/linux`: rules and their tests) into the agent, so
//! a freshly installed agent detects before any signed bundle reaches it.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            walk(&p, out);
        } else if p.extension().is_some_and(|x| x == "yml" || x == "yaml") {
            out.push(p);
        }
    }
}

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let pack = manifest.join("../../content/linux");
    println!("cargo:rerun-if-changed={}", pack.display());
    let mut code = String::from(
        "/// (bundle path, text) of every rule and test file of the default pack.\npub const FILES: &[(&str, &str)] = &[\n",
    );
    for sub in ["rules", "tests"] {
        let mut files = Vec::new();
        walk(&pack.join(sub), &mut files);
        for f in files {
            println!("cargo:rerun-if-changed={}", f.display());
            let rel = f.strip_prefix(&pack).unwrap_or(&f).display().to_string();
            let abs = f.canonicalize().unwrap_or(f.clone());
            let _ = writeln!(
                code,
                "    ({rel:?}, include_str!({:?})),",
                abs.display().to_string()
            );
        }
    }
    code.push_str("];\n");
    // YARA rules and their samples (`yara/*.yar`, `yara/*.tests`).
    code.push_str(
        "/// (bundle path, text) of every YARA rule and sample file of the default pack.\npub const YARA: &[(&str, &str)] = &[\n",
    );
    let mut yara: Vec<PathBuf> = std::fs::read_dir(pack.join("yara"))
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    yara.retain(|p| p.extension().is_some_and(|x| x == "yar" || x == "tests"));
    yara.sort();
    for f in yara {
        println!("cargo:rerun-if-changed={}", f.display());
        let rel = f.strip_prefix(&pack).unwrap_or(&f).display().to_string();
        let abs = f.canonicalize().unwrap_or(f.clone());
        let _ = writeln!(
            code,
            "    ({rel:?}, include_str!({:?})),",
            abs.display().to_string()
        );
    }
    code.push_str("];\n");
    let out =
        PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default()).join("builtin_pack.rs");
    if let Err(e) = std::fs::write(&out, code) {
        println!("cargo:warning=writing {}: {e}", out.display());
    }
}
