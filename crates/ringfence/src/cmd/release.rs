//! `ringfence release`: agent versions as signed releases (see
//! [`ringfence_content::release`] for the format and [`ringfence_agent::versions`] for the
//! layout on a host).
//!
//! - `release build --binary B --version V --keys KEYS -o F.release`: sign a binary with the
//!   keys directory's `releases` key (its own role: content signers cannot ship binaries).
//! - `release verify F --root R`: exit 0 only if an agent trusting R would accept it.
//! - `release install F --root R --versions-dir D [--activate]`: verify and add the version;
//!   with `--activate` the agent's supervisor switches to it on trial.
//! - `release keys-add --keys KEYS`: give an older keys directory its `releases` role (a root
//!   rotation agents follow like any other).

use std::path::PathBuf;

use anyhow::{Context, anyhow};
use ringfence_agent::content::manager::read_small;
use ringfence_agent::versions::VersionStore;
use ringfence_console::plan::parse_duration;
use ringfence_content::release::{MAX_BINARY_BYTES, sign_release, verify_release};
use ringfence_content::verify::TrustedRoot;
use ringfence_content::{KeySet, UnixTime};

use crate::cmd::print_line;
use crate::{CmdResult, Failure};

/// The largest release file read (binary and envelope).
const MAX_RELEASE_BYTES: u64 = MAX_BINARY_BYTES + 128 * 1024;
/// The largest root read.
const MAX_ROOT_BYTES: u64 = 1024 * 1024;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Sub,
}

#[derive(Debug, clap::Subcommand)]
enum Sub {
    /// Sign an agent binary as a release.
    Build(BuildArgs),
    /// Check a release against a trusted root.
    Verify(VerifyArgs),
    /// Verify a release and add its version to a versions directory.
    Install(InstallArgs),
    /// Add the `releases` role to a keys directory made before it existed.
    KeysAdd(KeysAddArgs),
}

#[derive(Debug, clap::Args)]
struct BuildArgs {
    /// The agent binary.
    #[arg(long)]
    binary: PathBuf,
    /// Its version: the directory name under `versions/` (`[0-9A-Za-z.+-]`, 1 to 64).
    #[arg(long)]
    version: String,
    /// Keys directory (`content keys init`) holding `releases.key`.
    #[arg(long)]
    keys: PathBuf,
    /// How long the release may be installed from now (`30d`, `12h`).
    #[arg(long, default_value = "30d")]
    valid_for: String,
    /// The release file to write.
    #[arg(short = 'o', long)]
    output: PathBuf,
}

#[derive(Debug, clap::Args)]
struct VerifyArgs {
    release: PathBuf,
    /// The trusted root: a `root.json` or a keys directory holding one.
    #[arg(long)]
    root: PathBuf,
}

#[derive(Debug, clap::Args)]
struct InstallArgs {
    release: PathBuf,
    /// The trusted root: a `root.json` or a keys directory holding one.
    #[arg(long)]
    root: PathBuf,
    /// The agent's versions directory.
    #[arg(long, default_value = "/var/lib/ringfence/versions")]
    versions_dir: PathBuf,
    /// Switch to it: the running agent's supervisor starts it on trial within a second.
    #[arg(long)]
    activate: bool,
}

#[derive(Debug, clap::Args)]
struct KeysAddArgs {
    #[arg(long)]
    keys: PathBuf,
    /// How long the new root is valid.
    #[arg(long, default_value = "365d")]
    root_valid_for: String,
}

pub fn run(args: Args) -> CmdResult {
    match args.command {
        Sub::Build(a) => build(&a),
        Sub::Verify(a) => verify(&a),
        Sub::Install(a) => install(&a),
        Sub::KeysAdd(a) => keys_add(&a),
    }
}

fn seconds(flag: &str, text: &str) -> Result<u64, Failure> {
    let ms = parse_duration(text).map_err(|e| Failure::refused(anyhow!("{flag}: {e}")))?;
    if ms <= 0 {
        return Err(Failure::refused(anyhow!(
            "{flag} {text:?}: must be positive"
        )));
    }
    Ok(ms.unsigned_abs() / 1000)
}

fn build(a: &BuildArgs) -> CmdResult {
    let valid_for = seconds("--valid-for", &a.valid_for)?;
    let keys = KeySet::load(&a.keys).map_err(Failure::refused)?;
    let binary = read_small(&a.binary, MAX_BINARY_BYTES)
        .map_err(|e| Failure::refused(anyhow!("--binary {}: {e}", a.binary.display())))?;
    let now = UnixTime::now();
    let file = sign_release(&keys, &binary, &a.version, now, now.plus_secs(valid_for))
        .map_err(Failure::refused)?;
    std::fs::write(&a.output, &file)
        .with_context(|| format!("writing {}", a.output.display()))
        .map_err(Failure::environment)?;
    print_line(&format!(
        "release {} ({} bytes of binary) signed by the releases role of root v{}, valid until \
         {} -> {}",
        a.version,
        binary.len(),
        keys.trusted_root().version(),
        now.plus_secs(valid_for),
        a.output.display()
    ))
    .context("writing to stdout")?;
    Ok(())
}

fn load_root(path: &std::path::Path) -> Result<TrustedRoot, Failure> {
    let path = if path.is_dir() {
        path.join("root.json")
    } else {
        path.to_owned()
    };
    let bytes = read_small(&path, MAX_ROOT_BYTES)
        .map_err(|e| Failure::refused(anyhow!("--root {}: {e}", path.display())))?;
    TrustedRoot::from_bytes(&bytes)
        .map_err(|e| Failure::refused(anyhow!("--root {}: {e}", path.display())))
}

fn read_release(path: &std::path::Path) -> Result<Vec<u8>, Failure> {
    read_small(path, MAX_RELEASE_BYTES)
        .map_err(|e| Failure::refused(anyhow!("{}: {e}", path.display())))
}

fn verify(a: &VerifyArgs) -> CmdResult {
    let root = load_root(&a.root)?;
    let bytes = read_release(&a.release)?;
    let release = verify_release(&bytes, &root, UnixTime::now())
        .map_err(|e| Failure::refused(anyhow!("{}: {e}", a.release.display())))?;
    print_line(&format!(
        "{}: release {} ({} bytes), issued {}, valid until {}: an agent trusting root v{} \
         accepts it",
        a.release.display(),
        release.version,
        release.binary.len(),
        release.issued,
        release.expires,
        root.version()
    ))
    .context("writing to stdout")?;
    Ok(())
}

fn install(a: &InstallArgs) -> CmdResult {
    let root = load_root(&a.root)?;
    let bytes = read_release(&a.release)?;
    let store = VersionStore::open(&a.versions_dir).map_err(Failure::environment)?;
    let version = store
        .install_release(&bytes, &root, UnixTime::now(), a.activate)
        .map_err(|e| Failure::refused(anyhow!("{}: {e}", a.release.display())))?;
    print_line(&if a.activate {
        format!(
            "version {version} installed in {} and current, on trial: the agent's supervisor \
             starts it and falls back to the previous version if it fails",
            a.versions_dir.display()
        )
    } else {
        format!(
            "version {version} installed in {}",
            a.versions_dir.display()
        )
    })
    .context("writing to stdout")?;
    Ok(())
}

fn keys_add(a: &KeysAddArgs) -> CmdResult {
    let valid_for = seconds("--root-valid-for", &a.root_valid_for)?;
    let mut keys = KeySet::load(&a.keys).map_err(Failure::refused)?;
    keys.add_releases_role(UnixTime::now().plus_secs(valid_for))
        .map_err(Failure::refused)?;
    print_line(&format!(
        "releases role added: {}/releases.key, root v{}",
        a.keys.display(),
        keys.trusted_root().version()
    ))
    .context("writing to stdout")?;
    Ok(())
}
