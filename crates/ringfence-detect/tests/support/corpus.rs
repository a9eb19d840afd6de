//! Rule corpora for tests and benchmarks: our pack (`content/linux/rules`) and SigmaHQ's Linux
//! rules (`../shared/sigma/rules-linux`, outside the repository). Shared by `tests/` and
//! `benches/` through `#[path]`.

use std::path::{Path, PathBuf};

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// SigmaHQ's Linux rules; `RINGFENCE_SIGMA_DIR` overrides the path.
pub fn sigma_dir() -> PathBuf {
    std::env::var_os("RINGFENCE_SIGMA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("../shared/sigma/rules-linux"))
}

/// Every `*.yml` under `dir` as (path relative to `dir`, text), sorted by path.
pub fn yaml_files(dir: &Path) -> std::io::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let p = entry?.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "yml") {
                let rel = p.strip_prefix(dir).unwrap_or(&p).display().to_string();
                out.push((rel, std::fs::read_to_string(&p)?));
            }
        }
    }
    out.sort();
    Ok(out)
}
