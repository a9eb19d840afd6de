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
    /// Operators and their roles: list, add NAME --role ROLE, role NAME ROLE.
    Operators(crate::cmd::console_admin::OperatorsArgs),
    /// Operator API tokens: list, create --operator NAME [--ttl 30d], revoke ID.
    Tokens(crate::cmd::console_admin::TokensArgs),
    /// Requests waiting for a second operator's approval.
    Approvals(crate::cmd::console_admin::ApprovalsArgs),
    /// Approve another operator's held request by its id; it runs at once.
    Approve(crate::cmd::console_admin::ApproveArgs),
    /// Reject another operator's held request (or withdraw your own); it never runs.
    Reject(crate::cmd::console_admin::RejectArgs),
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
    /// The console's own directory: its CA and server certificate (`tls/`) and its order key
    /// (`order.key`), made at the first start. Every console of a fleet shares them.
    #[arg(long, env = "RINGFENCE_DATA", default_value = "ringfence-data")]
    pub data: PathBuf,
    /// Serve this certificate chain (PEM, leaf first, the CA agents pin last) instead of the
    /// console's own; with --tls-key.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The key of --tls-cert (PEM).
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Another name (DNS name or IP address) agents reach the console by, for the server
    /// certificate the console issues itself; repeat for several.
    #[arg(long)]
    pub tls_name: Vec<String>,
    /// Serve plain HTTP (loopback addresses only: tests and drills).
    #[arg(long, hide = true)]
    pub plain_http: bool,
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
    /// Create (or reset) this admin operator and print its password and API token (a reset
    /// revokes the operator's old tokens and ends their sessions).
    #[arg(long)]
    pub init_operator: Option<String>,
    /// A settings file with a `[retention]` table: how long findings, check-ins and the audit
    /// log are kept (defaults: findings 90 days, 1,000,000 in all, 100,000 per agent).
    #[arg(long, env = "RINGFENCE_CONSOLE_SETTINGS")]
    pub settings: Option<PathBuf>,
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
    fn republish(&self, old: &[u8], old_version: u64, new_version: u64) -> Result<Vec<u8>, String> {
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
                if kind == EntryKind::Metadata && path == ringfence_content::bundle::ALLOW_RULE_DROP
                {
                    continue;
                }
                builder
                    .add(kind, path, data.to_vec())
                    .map_err(|e| format!("rebuilding {path}: {e}"))?;
            }
        }
        // A rollback may well carry fewer rules than the bad version it replaces; agents'
        // probation refuses a large drop unless the signed metadata says it is intended.
        builder
            .metadata(
                ringfence_content::bundle::ALLOW_RULE_DROP,
                &format!("rollback to the content of v{old_version}"),
            )
            .map_err(|e| format!("rebuilding: {e}"))?;
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

    fn verify_release(&self, bytes: &[u8], version: &str) -> Result<String, String> {
        let keys = KeySet::load(&self.keys_dir).map_err(|e| format!("content keys: {e}"))?;
        let release =
            ringfence_content::release::verify_release(bytes, keys.trusted_root(), UnixTime::now())
                .map_err(|e| e.to_string())?;
        if release.version != version {
            return Err(format!(
                "the release is version {}, not {version}",
                release.version
            ));
        }
        Ok(format!(
            "agent release {version}, issued {}, expires {}, {} byte binary",
            release.issued,
            release.expires,
            release.binary.len()
        ))
    }
}

/// The console's TLS material and order key, made in `data` at the first start: the server
/// configuration, the CA pin agents and the CLI trust, and the order key.
pub struct ConsoleIdentity {
    pub tls: Option<Arc<ringfence_wire::tls::ServerConfig>>,
    /// Issues agents' client certificates (the console's own CA); none on plain HTTP.
    pub client_ca: Option<Arc<ringfence_wire::tls::ConsoleCa>>,
    pub ca_pin: Option<ringfence_wire::CaPin>,
    pub order_key: Arc<ringfence_wire::OrderKey>,
}

/// Load or make the console's identity. `tls_files` is an operator's own chain and key;
/// `plain` serves plain HTTP (loopback only).
pub fn console_identity(
    data: &Path,
    listen: SocketAddr,
    tls_files: Option<(&Path, &Path)>,
    extra_names: &[String],
    plain: bool,
) -> Result<ConsoleIdentity, Failure> {
    use ringfence_wire::tls::{ConsoleTls, TlsNotice, create_private_dir, server_names};
    create_private_dir(data)
        .with_context(|| format!("creating {}", data.display()))
        .map_err(Failure::environment)?;
    let (order_key, made) = ringfence_wire::OrderKey::load_or_create(&data.join("order.key"))
        .map_err(|e| Failure::environment(anyhow::anyhow!("the console's order key: {e}")))?;
    if made {
        tracing::info!(path = %data.join("order.key").display(), "made the console's order key");
    }
    if plain {
        if !listen.ip().is_loopback() {
            return Err(Failure::refused(anyhow::anyhow!(
                "--plain-http serves only on a loopback address, not {listen}"
            )));
        }
        return Ok(ConsoleIdentity {
            tls: None,
            client_ca: None,
            ca_pin: None,
            order_key: Arc::new(order_key),
        });
    }
    let tls = match tls_files {
        Some((cert, key)) => ConsoleTls::from_files(cert, key).map_err(Failure::refused)?,
        None => {
            let (tls, notices) =
                ConsoleTls::load_or_create(&data.join("tls"), &server_names(listen, extra_names))
                    .map_err(Failure::environment)?;
            for n in notices {
                match n {
                    TlsNotice::CreatedCa => {
                        tracing::info!(dir = %data.join("tls").display(), "made the console CA")
                    }
                    TlsNotice::IssuedServerCert { reason } => {
                        tracing::info!(%reason, "issued the console's server certificate")
                    }
                    TlsNotice::ExpiresSoon { .. } => {}
                }
            }
            tls
        }
    };
    if tls.days_left() <= ringfence_wire::tls::RENEW_WITHIN_DAYS {
        tracing::warn!(
            days_left = tls.days_left(),
            "the console's server certificate expires soon: renew it (the console's own is \
             re-issued at start; an operator's must be replaced)"
        );
    }
    // Agents' client certificates come from the console's own CA (made with its server
    // certificate; with an operator's certificate, only when DATA/tls already holds one).
    let tls_dir = data.join("tls");
    let client_ca = if tls_dir.join(ringfence_wire::tls::files::CA_KEY).exists() {
        let ca = ringfence_wire::tls::ConsoleCa::load(&tls_dir).map_err(|e| {
            Failure::environment(anyhow::anyhow!(
                "the console CA that issues agents' certificates: {e}"
            ))
        })?;
        Some(Arc::new(ca))
    } else {
        tracing::warn!(
            dir = %tls_dir.display(),
            "no console CA here: agents get no client certificates (mutual TLS is off)"
        );
        None
    };
    let server = tls
        .server_config(client_ca.as_ref().map(|c| c.cert()))
        .map_err(Failure::environment)?;
    Ok(ConsoleIdentity {
        tls: Some(server),
        client_ca,
        ca_pin: Some(tls.pin()),
        order_key: Arc::new(order_key),
    })
}

/// Open the database and build the console state.
pub async fn build_state(
    db_url: &str,
    content_dir: PathBuf,
    content_keys: Option<PathBuf>,
    checkin_interval_ms: i64,
    clock: SharedClock,
    identity: &ConsoleIdentity,
) -> anyhow::Result<AppState> {
    let db = Db::open(db_url).await?;
    let mut config = Config::new(content_dir);
    config.order_key = Some(identity.order_key.clone());
    config.client_ca = identity.client_ca.clone();
    // Session cookies never travel over plain HTTP once the console serves HTTPS.
    config.secure_cookies = identity.tls.is_some();
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
        Sub::Operators(a) => crate::cmd::console_admin::operators(a),
        Sub::Tokens(a) => crate::cmd::console_admin::tokens(a),
        Sub::Approvals(a) => crate::cmd::console_admin::approvals(a),
        Sub::Approve(a) => crate::cmd::console_admin::approve(a),
        Sub::Reject(a) => crate::cmd::console_admin::reject(a),
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
    let retention = match &a.settings {
        None => ringfence_console::retention::Retention::default(),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            ringfence_console::retention::Retention::from_settings(&text)
                .map_err(|e| Failure::refused(anyhow::anyhow!("{}: {e}", path.display())))?
        }
    };
    crate::cmd::agent::init_tracing();
    let identity = console_identity(
        &a.data,
        a.listen,
        a.tls_cert.as_deref().zip(a.tls_key.as_deref()),
        &a.tls_name,
        a.plain_http,
    )?;
    runtime()?.block_on(async move {
        let clock: SharedClock = if a.clock_speed == 1.0 {
            Arc::new(SystemClock)
        } else {
            Arc::new(AcceleratedClock::new(a.clock_speed))
        };
        let state = build_state(
            &a.db,
            content_dir,
            a.content_keys,
            interval,
            clock,
            &identity,
        )
        .await?
        .with_retention(retention);
        if let Some(name) = &a.init_operator {
            let password = new_password()?;
            let token = ringfence_console::auth::create_operator(&state, name, &password)
                .await
                .map_err(|e| anyhow::anyhow!("creating operator: {e}"))?;
            println!("operator: {name}\npassword: {password}\napi token: {token}");
        }
        let period = Duration::from_millis(period.unsigned_abs());
        let running = match &identity.tls {
            Some(tls) => ringfence_console::serve_tls(state, a.listen, period, tls.clone()).await,
            None => ringfence_console::serve(state, a.listen, period).await,
        }
        .with_context(|| format!("listening on {}", a.listen))?;
        println!(
            "console: {} (database {})",
            running.url(),
            ringfence_console::db::redact(&a.db)
        );
        if let Some(pin) = identity.ca_pin {
            println!("CA pin:    {pin}   (agents and the CLI: --ca-sha256 {pin})");
        }
        println!(
            "order key: {}   (agents that may take response orders: fleet.order_key)",
            identity.order_key.pin()
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
