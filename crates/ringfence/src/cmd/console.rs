//! `ringfence console serve`: the fleet console on SQLite (default) or PostgreSQL.
//!
//! Also hosts [`ResigningRepublisher`], the rollback path for real signed content: it decodes
//! the previous bundle, rebuilds it with the new (higher) content version and signs it with the
//! content keys, so agents that refuse older versions accept the rollback.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ringfence_console::content::Republisher;
use ringfence_console::plan::parse_duration;
use ringfence_console::{AcceleratedClock, AppState, Config, Db, SharedClock, SystemClock};
use ringfence_content::{
    Bundle, BundleBuilder, EntryKind, KeySet, Limits, SignOptions, SignedBundle, UnixTime,
    sign_bundle,
};

use crate::{CmdResult, Failure};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Sub,
}

#[derive(Debug, clap::Subcommand)]
enum Sub {
    /// Serve the console API, content files and dashboard.
    Serve(ServeArgs),
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// `sqlite:PATH` or `postgres://user@host/db`.
    #[arg(
        long,
        env = "RINGFENCE_DB",
        default_value = "sqlite:ringfence-data/console.db"
    )]
    pub db: String,
    /// Address to listen on.
    #[arg(long, env = "RINGFENCE_LISTEN", default_value = "127.0.0.1:8650")]
    pub listen: SocketAddr,
    /// Where signed bundles are stored and served from (default: `content/` beside a SQLite
    /// file, `ringfence-data/content` with PostgreSQL). Several consoles share it (or a CDN).
    #[arg(long, env = "RINGFENCE_CONTENT_DIR")]
    pub content_dir: Option<PathBuf>,
    /// Content signing keys (`ringfence content keys init`): rollbacks are re-signed with them.
    /// Without them a rollback copies the old bundle's bytes (fine for opaque drill content).
    #[arg(long, env = "RINGFENCE_CONTENT_KEYS")]
    pub content_keys: Option<PathBuf>,
    /// How often agents check in.
    #[arg(long, default_value = "60s")]
    pub checkin_interval: String,
    /// How often the rollout engine judges the active rollout (real time).
    #[arg(long, default_value = "5s")]
    pub engine_period: String,
    /// Create (or reset) this operator and print its password and API token.
    #[arg(long)]
    pub init_operator: Option<String>,
    /// Run the console's clock this many times faster than real time (drills only).
    #[arg(long, default_value_t = 1.0, hide = true)]
    pub clock_speed: f64,
}

/// The content dir that goes with a database URL.
pub fn default_content_dir(db: &str) -> PathBuf {
    match db.strip_prefix("sqlite:") {
        Some(path) => Path::new(path.trim_start_matches("//"))
            .parent()
            .unwrap_or(Path::new("."))
            .join("content"),
        None => PathBuf::from("ringfence-data/content"),
    }
}

/// Rebuild a signed bundle under a new content version and sign it with the content keys.
#[derive(Debug)]
pub struct ResigningRepublisher {
    keys_dir: PathBuf,
}

impl ResigningRepublisher {
    pub fn new(keys_dir: PathBuf) -> ResigningRepublisher {
        ResigningRepublisher { keys_dir }
    }
}

impl Republisher for ResigningRepublisher {
    fn republish(
        &self,
        old: &[u8],
        _old_version: u64,
        new_version: u64,
    ) -> Result<Vec<u8>, String> {
        let limits = Limits::default();
        let keys = KeySet::load(&self.keys_dir).map_err(|e| format!("content keys: {e}"))?;
        let signed = SignedBundle::decode(old, &limits).map_err(|e| format!("old bundle: {e}"))?;
        let bundle = Bundle::decode(&signed.payload, &limits)
            .map_err(|e| format!("old bundle payload: {e}"))?;
        let mut builder = BundleBuilder::new(new_version, bundle.schema().clone(), limits);
        for kind in [
            EntryKind::Metadata,
            EntryKind::Rule,
            EntryKind::Ioc,
            EntryKind::Test,
        ] {
            for (path, data) in bundle.entries(kind) {
                builder
                    .add(kind, path, data.to_vec())
                    .map_err(|e| format!("rebuilding {path}: {e}"))?;
            }
        }
        let rebuilt = builder.build().map_err(|e| format!("rebuilding: {e}"))?;
        let resigned = sign_bundle(
            &rebuilt,
            &keys,
            &SignOptions::new(new_version, UnixTime::now()),
        )
        .map_err(|e| format!("signing: {e}"))?;
        Ok(resigned.encode())
    }

    fn verify(&self, bytes: &[u8], version: u64) -> Result<String, String> {
        let keys = KeySet::load(&self.keys_dir).map_err(|e| format!("content keys: {e}"))?;
        ringfence_console::content::verify_signed(keys.trusted_root(), bytes, version)
    }
}

/// Open the database and build the console state.
pub async fn build_state(
    db_url: &str,
    content_dir: PathBuf,
    content_keys: Option<PathBuf>,
    checkin_interval_ms: i64,
    clock: SharedClock,
) -> anyhow::Result<AppState> {
    let db = Db::open(db_url).await?;
    let mut config = Config::new(content_dir);
    config.checkin_interval_ms = checkin_interval_ms;
    config.checkin_jitter_ms = checkin_interval_ms / 10;
    let mut state = AppState::new(db, clock, config)
        .await
        .map_err(|e| anyhow::anyhow!("loading console state: {e}"))?;
    if let Some(keys) = content_keys {
        state = state.with_republisher(Arc::new(ResigningRepublisher::new(keys)));
    }
    Ok(state)
}

/// A random password for a new operator.
pub fn new_password() -> anyhow::Result<String> {
    ringfence_console::auth::random_hex(12).map_err(|e| anyhow::anyhow!("{e}"))
}

pub fn run(args: Args) -> CmdResult {
    match args.command {
        Sub::Serve(a) => serve(a),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
        .map_err(Failure::environment)
}

fn serve(a: ServeArgs) -> CmdResult {
    let interval = parse_duration(&a.checkin_interval)
        .map_err(|e| Failure::refused(anyhow::anyhow!("--checkin-interval: {e}")))?;
    let period = parse_duration(&a.engine_period)
        .map_err(|e| Failure::refused(anyhow::anyhow!("--engine-period: {e}")))?;
    let content_dir = a
        .content_dir
        .clone()
        .unwrap_or_else(|| default_content_dir(&a.db));
    if let Some(path) = a.db.strip_prefix("sqlite:")
        && let Some(parent) = Path::new(path.trim_start_matches("//")).parent()
    {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    runtime()?.block_on(async move {
        let clock: SharedClock = if a.clock_speed == 1.0 {
            Arc::new(SystemClock)
        } else {
            Arc::new(AcceleratedClock::new(a.clock_speed))
        };
        let state = build_state(&a.db, content_dir, a.content_keys, interval, clock).await?;
        if let Some(name) = &a.init_operator {
            let password = new_password()?;
            let token = ringfence_console::auth::create_operator(&state, name, &password)
                .await
                .map_err(|e| anyhow::anyhow!("creating operator: {e}"))?;
            println!("operator: {name}\npassword: {password}\napi token: {token}");
        }
        let running = ringfence_console::serve(
            state,
            a.listen,
            Duration::from_millis(period.unsigned_abs()),
        )
        .await
        .with_context(|| format!("listening on {}", a.listen))?;
        println!(
            "console: {} (database {})",
            running.url(),
            ringfence_console::db::redact(&a.db)
        );
        tokio::signal::ctrl_c()
            .await
            .context("waiting for Ctrl-C")?;
        eprintln!("stopping");
        let state = running.state.clone();
        running.shutdown().await.context("stopping the console")?;
        state.db.close().await;
        Ok::<(), anyhow::Error>(())
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_dir_sits_beside_the_database() {
        assert_eq!(
            default_content_dir("sqlite:/x/y/console.db"),
            PathBuf::from("/x/y/content")
        );
        assert_eq!(
            default_content_dir("postgres://h/db"),
            PathBuf::from("ringfence-data/content")
        );
    }

    #[test]
    fn uploads_verify_against_the_keys_root_and_rollbacks_still_do() {
        let dir = tempfile::tempdir().unwrap();
        let keys_dir = dir.path().join("keys");
        let keys = ringfence_content::init_keys(
            &keys_dir,
            &ringfence_content::KeysInitOptions::new(UnixTime::now()),
        )
        .unwrap();
        let schema = ringfence_content::SchemaId {
            version: 1,
            fingerprint: "test".into(),
        };
        let mut builder = BundleBuilder::new(1, schema, Limits::default());
        builder
            .add(EntryKind::Rule, "rules/a.yml", b"title: a\n".to_vec())
            .unwrap();
        let v1 = sign_bundle(
            &builder.build().unwrap(),
            &keys,
            &SignOptions::new(1, UnixTime::now()),
        )
        .unwrap()
        .encode();
        let r = ResigningRepublisher::new(keys_dir);
        assert!(r.verify(&v1, 1).is_ok());
        assert!(r.verify(b"not a bundle", 1).is_err());
        let wrong = r.verify(&v1, 2).unwrap_err();
        assert!(wrong.contains("content version 1, not 2"), "{wrong}");
        let v3 = r.republish(&v1, 1, 3).unwrap();
        assert!(r.verify(&v3, 3).is_ok());
    }
}
