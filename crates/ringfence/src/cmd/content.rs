//! `ringfence content keys init|rotate`, `content build` and `content verify`: making,
//! signing and checking content bundles offline; `content maintenance-token`: signing the
//! order that disarms, stops or uninstalls a tamper-protected agent, with the root keys.
//!
//! `build` and `verify` take their validator from the agent's
//! [`ringfence_agent::content::default_engine`], so the build, the check and the agent all
//! validate alike. `verify` exits 0 only if an agent at `--current-version` would accept the
//! bundle (signatures, expiry, versions, payload, field schema, validation); a refusal exits 1
//! with the role, field, file or line named. Builds are deterministic: the same directory,
//! version, keys and `SOURCE_DATE_EPOCH` give byte-identical bundles.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow};
use ringfence_agent::content::engine::{agent_schema, default_engine};
use ringfence_agent::content::manager::read_small;
use ringfence_console::plan::parse_duration;
use ringfence_content::{
    ALLOW_EMPTY, ALLOW_RULE_DROP, BuildOptions, KeySet, KeysInitOptions, Limits, MaintenanceAction,
    MaintenanceClaims, Outcome, RotateOptions, SeenVersions, SignedBundle, TrustedRoot, UnixTime,
    ValidationError, VerifyError, VerifyOptions, build_signed_bundle, init_keys,
    sign_maintenance_token, verify_signed_bundle,
};

use crate::cmd::print_line;
use crate::{CmdResult, Failure};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: ContentCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum ContentCommand {
    /// Signing keys (TUF roles: root, targets, snapshot, timestamp).
    Keys(KeysArgs),
    /// Validate, test, compile and sign a content directory into one bundle.
    Build(BuildArgs),
    /// Check a bundle as an agent would; exit 0 only if it would be accepted.
    Verify(VerifyArgs),
    /// Sign a maintenance token with the maintenance key (the root keys for a root made
    /// before that role): the order that disarms, stops or uninstalls a tamper-protected agent.
    MaintenanceToken(MaintenanceTokenArgs),
}

#[derive(Debug, clap::Args)]
pub struct KeysArgs {
    #[command(subcommand)]
    pub command: KeysCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum KeysCommand {
    /// Create a keys directory: root key(s) with a threshold, targets, snapshot, timestamp,
    /// releases and maintenance.
    Init(KeysInitArgs),
    /// Replace the root keys: root v(N+1) signed by the old and the new keys.
    Rotate(KeysRotateArgs),
    /// Give a keys directory made before maintenance keys its `maintenance` role (root
    /// v(N+1)); from then on tokens signed by the root keys are refused.
    AddMaintenance(KeysAddArgs),
}

#[derive(Debug, clap::Args)]
pub struct KeysAddArgs {
    #[arg(long)]
    pub dir: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct KeysInitArgs {
    #[arg(long)]
    pub dir: PathBuf,
    /// Number of root keys.
    #[arg(long, default_value_t = 1)]
    pub root_keys: usize,
    /// How many root keys must sign a root.
    #[arg(long, default_value_t = 1)]
    pub threshold: u32,
}

#[derive(Debug, clap::Args)]
pub struct KeysRotateArgs {
    #[arg(long)]
    pub dir: PathBuf,
    #[arg(long, default_value_t = 1)]
    pub root_keys: usize,
    #[arg(long, default_value_t = 1)]
    pub threshold: u32,
}

#[derive(Debug, clap::Args)]
pub struct BuildArgs {
    /// Content directory: `rules/**/*.yml`, `iocs/`, `tests/`.
    pub dir: PathBuf,
    /// Content version; must be above every version already shipped.
    #[arg(long)]
    pub version: u64,
    /// Keys directory from `content keys init`.
    #[arg(long)]
    pub keys: PathBuf,
    /// Where to write the signed bundle.
    #[arg(short = 'o', long = "output")]
    pub output: PathBuf,
    /// Extra metadata, `KEY=VALUE`; repeat for several.
    #[arg(long)]
    pub metadata: Vec<String>,
    /// Sign a bundle with no rule and no IOC (refused otherwise, at build and at load), for
    /// this reason; the reason is part of the signed metadata.
    #[arg(long, value_name = "REASON")]
    pub allow_empty: Option<String>,
    /// Let agents take this bundle even where it has fewer than half the rules of the content
    /// they run (refused otherwise), for this reason; part of the signed metadata.
    #[arg(long, value_name = "REASON")]
    pub allow_rule_drop: Option<String>,
    /// Agent configuration whose `[sensor] profile` and `[sources]` the hook check assumes
    /// (default: the agent's defaults).
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub hooks: crate::cmd::rules::HookArgs,
}

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    pub bundle: PathBuf,
    /// The trusted root: a keys directory or a `root.json`.
    #[arg(long)]
    pub root: PathBuf,
    /// The content version the agent runs now (a bundle at or below it is refused or a no-op).
    #[arg(long)]
    pub current_version: Option<u64>,
}

#[derive(Debug, clap::Args)]
pub struct MaintenanceTokenArgs {
    /// Keys directory from `content keys init`; its maintenance key signs (every root key,
    /// for a root made before the maintenance role).
    #[arg(long)]
    pub keys: PathBuf,
    /// What the agent is to do: disarm, stop or uninstall.
    #[arg(long, value_parser = parse_action)]
    pub action: MaintenanceAction,
    /// The agent's host name, or `*` for every host (a fleet-wide token: handle like the
    /// root keys).
    #[arg(long)]
    pub host: String,
    /// How long the token is valid from now: `30m`, `1h`, `2d`; at most 7 days.
    #[arg(long)]
    pub valid_for: String,
    /// Why (a change ticket, say); shown in the agent's report.
    #[arg(long)]
    pub reason: String,
    /// Write the token here (mode 0600) instead of stdout.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// `--action`: a [`MaintenanceAction`] by its name.
fn parse_action(s: &str) -> Result<MaintenanceAction, String> {
    MaintenanceAction::ALL
        .into_iter()
        .find(|a| a.name() == s)
        .ok_or_else(|| format!("`{s}`: expected disarm, stop or uninstall"))
}

pub fn run(args: Args) -> CmdResult {
    match args.command {
        ContentCommand::Keys(k) => match k.command {
            KeysCommand::Init(a) => keys_init(&a),
            KeysCommand::Rotate(a) => keys_rotate(&a),
            KeysCommand::AddMaintenance(a) => keys_add_maintenance(&a),
        },
        ContentCommand::Build(a) => build(&a),
        ContentCommand::Verify(a) => verify(&a),
        ContentCommand::MaintenanceToken(a) => maintenance_token(&a),
    }
}

/// `SOURCE_DATE_EPOCH` (reproducible builds) or the clock.
fn now() -> Result<UnixTime, Failure> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(s) => s.trim().parse::<u64>().map(UnixTime).map_err(|_| {
            Failure::refused(anyhow!("SOURCE_DATE_EPOCH: expected seconds, got {s:?}"))
        }),
        Err(_) => Ok(UnixTime::now()),
    }
}

fn keys_init(a: &KeysInitArgs) -> CmdResult {
    let mut opts = KeysInitOptions::new(now()?);
    opts.root_keys = a.root_keys;
    opts.root_threshold = a.threshold;
    let keys = init_keys(&a.dir, &opts).map_err(Failure::refused)?;
    print_line(&format!(
        "keys created in {}: {} root key(s), threshold {}, root v{}; agents trust {}",
        a.dir.display(),
        a.root_keys,
        a.threshold,
        keys.trusted_root().version(),
        a.dir.join("root.json").display()
    ))
    .context("writing to stdout")?;
    Ok(())
}

fn keys_add_maintenance(a: &KeysAddArgs) -> CmdResult {
    let mut keys = KeySet::load(&a.dir).map_err(Failure::refused)?;
    keys.add_maintenance_role(now()?.plus_days(365))
        .map_err(Failure::refused)?;
    print_line(&format!(
        "maintenance role added in root v{}: {} signs maintenance tokens (keep it offline); \
         agents take it with the next bundle, then refuse tokens signed by the root keys",
        keys.trusted_root().version(),
        a.dir.join("maintenance.key").display()
    ))
    .context("writing to stdout")?;
    Ok(())
}

fn keys_rotate(a: &KeysRotateArgs) -> CmdResult {
    let mut keys = KeySet::load(&a.dir).map_err(Failure::refused)?;
    let opts = RotateOptions {
        new_root_keys: a.root_keys,
        new_threshold: a.threshold,
        expires: now()?.plus_days(365),
    };
    keys.rotate_root(&opts).map_err(Failure::refused)?;
    print_line(&format!(
        "root rotated to v{}; old root keys moved to {}",
        keys.trusted_root().version(),
        a.dir.join("retired").display()
    ))
    .context("writing to stdout")?;
    Ok(())
}

fn build(a: &BuildArgs) -> CmdResult {
    let keys = KeySet::load(&a.keys).map_err(Failure::refused)?;
    let mut opts = BuildOptions::new(a.version, agent_schema(), now()?);
    let mut metadata = BTreeMap::new();
    for m in &a.metadata {
        let (k, v) = m.split_once('=').ok_or_else(|| {
            Failure::refused(anyhow!("--metadata: expected KEY=VALUE, got {m:?}"))
        })?;
        metadata.insert(k.to_owned(), v.to_owned());
    }
    for (flag, key, reason) in [
        ("--allow-empty", ALLOW_EMPTY, &a.allow_empty),
        ("--allow-rule-drop", ALLOW_RULE_DROP, &a.allow_rule_drop),
    ] {
        if let Some(reason) = reason {
            if reason.trim().is_empty() {
                return Err(Failure::refused(anyhow!(
                    "{flag}: give the reason, e.g. {flag} \"retire the pack\""
                )));
            }
            metadata.insert(key.to_owned(), reason.clone());
        }
    }
    opts.metadata.extend(metadata);
    let engine = default_engine();
    let built = build_signed_bundle(&a.dir, &opts, &keys, &*engine.validator)
        .map_err(|e| Failure::refused(anyhow!("{}: {e}", a.dir.display())))?;
    let bytes = built.signed.encode();
    ringfence_content::store::atomic_write(&a.output, &bytes)
        .with_context(|| format!("writing {}", a.output.display()))?;
    for path in &built.dir_report.skipped {
        print_line(&format!("skipped {}", path.display())).context("writing to stdout")?;
    }
    for note in &built.report.notes {
        print_line(&format!("note: {note}")).context("writing to stdout")?;
    }
    // Rules the eBPF sensor's profile gives no hook to: built all the same (a profile change
    // makes them live), each reported.
    let agent_config = match &a.config {
        Some(p) => {
            ringfence_agent::Config::load(p).map_err(|e| Failure::refused(anyhow!("{e}")))?
        }
        None => ringfence_agent::Config::default(),
    };
    let (unhooked, under) = a.hooks.unhooked(&agent_config);
    let rules: Vec<(&str, &str)> = built
        .bundle
        .rules()
        .filter_map(|(p, b)| Some((p, std::str::from_utf8(b).ok()?)))
        .collect();
    let dead = ringfence_agent::content::sigma::unhooked_in(&rules, &unhooked, &under);
    for line in &dead {
        print_line(&format!("note: {line}")).context("writing to stdout")?;
    }
    if !dead.is_empty() {
        print_line(&format!(
            "note: {} rule{} can never fire under {under}",
            dead.len(),
            if dead.len() == 1 { "" } else { "s" }
        ))
        .context("writing to stdout")?;
    }
    print_line(&format!(
        "built content version {} ({} rules, {} YARA rules, {} tests, validator: {}): {} bytes to {}",
        a.version,
        built.report.rules,
        built.report.yara_rules,
        built.report.tests,
        engine.name,
        bytes.len(),
        a.output.display()
    ))
    .context("writing to stdout")?;
    Ok(())
}

fn maintenance_token(a: &MaintenanceTokenArgs) -> CmdResult {
    let ms =
        parse_duration(&a.valid_for).map_err(|e| Failure::refused(anyhow!("--valid-for: {e}")))?;
    if ms % 1000 != 0 {
        return Err(Failure::refused(anyhow!(
            "--valid-for {:?}: whole seconds only",
            a.valid_for
        )));
    }
    let valid_for = ms.unsigned_abs() / 1000;
    let keys = KeySet::load(&a.keys).map_err(Failure::refused)?;
    let claims = MaintenanceClaims::new(
        a.action,
        a.host.clone(),
        UnixTime::now(),
        valid_for,
        a.reason.clone(),
    )
    .map_err(Failure::environment)?;
    let token = sign_maintenance_token(&keys, &claims).map_err(Failure::refused)?;
    let summary = format!(
        "{} token for {} (signed by the {} keys of root v{}, nonce {}), valid {} to {}",
        claims.action,
        if claims.is_fleet_wide() {
            "every host".to_owned()
        } else {
            format!("host {}", claims.host)
        },
        ringfence_content::maintenance::token_signer(keys.trusted_root()),
        keys.trusted_root().version(),
        claims.nonce,
        claims.issued,
        claims.expires
    );
    match &a.out {
        Some(path) => {
            ringfence_content::store::atomic_write(path, &token)
                .with_context(|| format!("writing {}", path.display()))?;
            print_line(&format!("{summary}: written to {}", path.display()))
                .context("writing to stdout")?;
        }
        None => {
            let text = String::from_utf8(token).context("token is not UTF-8")?;
            print_line(&text).context("writing to stdout")?;
            eprintln!("{summary}");
        }
    }
    if claims.is_fleet_wide() {
        eprintln!(
            "warning: this token works on every host that trusts these root keys until {}; \
             keep it like the root keys",
            claims.expires
        );
    }
    Ok(())
}

/// Reads a trusted root from a keys directory or a `root.json`.
pub fn load_root(path: &Path) -> Result<TrustedRoot, Failure> {
    let file = if path.is_dir() {
        path.join("root.json")
    } else {
        path.to_owned()
    };
    let bytes = read_small(&file, 1024 * 1024)
        .map_err(|e| Failure::refused(anyhow!("{}: {e}", file.display())))?;
    TrustedRoot::from_bytes(&bytes)
        .map_err(|e| Failure::refused(anyhow!("{}: {e}", file.display())))
}

fn verify(a: &VerifyArgs) -> CmdResult {
    let root = load_root(&a.root)?;
    let limits = Limits::default();
    let bytes = SignedBundle::read_file(&a.bundle, &limits)
        .map_err(|e| Failure::refused(anyhow!("{}: {e}", a.bundle.display())))?;
    let mut opts = VerifyOptions::new(UnixTime::now());
    opts.current_content_version = a.current_version;
    let engine = default_engine();
    let verified = verify_signed_bundle(
        &bytes,
        &root,
        SeenVersions::default(),
        &opts,
        &*engine.validator,
    )
    .map_err(|e| {
        let why = match e {
            VerifyError::Validation(errors) => format!(
                "content validation failed with {} error(s):{}",
                errors.len(),
                listed(&errors)
            ),
            other => other.to_string(),
        };
        Failure::refused(anyhow!("{}: refused: {why}", a.bundle.display()))
    })?;
    let line = match &verified.outcome {
        Outcome::New { bundle, report } => {
            let ours = agent_schema();
            if bundle.schema() != &ours {
                return Err(Failure::refused(anyhow!(
                    "{}: refused: built for field schema v{} ({}), this agent has v{} ({})",
                    a.bundle.display(),
                    bundle.schema().version,
                    bundle.schema().fingerprint,
                    ours.version,
                    ours.fingerprint
                )));
            }
            let compiled = (engine.compile)(bundle, engine.mode).map_err(|errors| {
                Failure::refused(anyhow!(
                    "{}: refused: {} compile error(s):{}",
                    a.bundle.display(),
                    errors.len(),
                    listed(&errors)
                ))
            })?;
            format!(
                "ok: content version {} would be accepted ({} rules compiled, {} tests, schema v{}, root v{})",
                verified.content_version,
                compiled.rules().len(),
                report.tests,
                bundle.schema().version,
                verified.root.version()
            )
        }
        Outcome::Unchanged => format!(
            "ok: content version {} is the current version: an agent would do nothing",
            verified.content_version
        ),
        _ => format!("ok: content version {}", verified.content_version),
    };
    print_line(&line).context("writing to stdout")?;
    Ok(())
}

/// One error a line, indented, each naming its file, line, rule and test.
fn listed(errors: &[ValidationError]) -> String {
    errors.iter().map(|e| format!("\n  {e}")).collect()
}

/// `ringfence bench content`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Content directories merged into one bundle (each's `rules/` and `tests/`).
    #[arg(long = "rules", default_values = ["content/linux"])]
    pub rules: Vec<PathBuf>,
    /// Events in the probation sample.
    #[arg(long, default_value_t = 4096)]
    pub sample_events: usize,
    /// Shadow period, seconds (a configured wait, reported separately).
    #[arg(long, default_value_t = 0)]
    pub shadow_secs: u64,
    /// Worker restarts to time.
    #[arg(long, default_value_t = 3)]
    pub restarts: usize,
}

/// Copies `from` into `to` (regular files and directories only).
fn copy_tree(from: &Path, to: &Path) -> anyhow::Result<usize> {
    let mut n = 0;
    std::fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let target = to.join(entry.file_name());
        if kind.is_dir() {
            n += copy_tree(&entry.path(), &target)?;
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &target)
                .with_context(|| format!("copying {}", entry.path().display()))?;
            n += 1;
        }
    }
    Ok(n)
}

/// Time from a bundle landing in the content directory to active (verify, compile,
/// probation), and worker restart time. Prints figures; asserts nothing about time.
pub fn bench(args: &BenchArgs) -> CmdResult {
    use ringfence_agent::Detector;
    use ringfence_agent::content::ContentSection;
    use ringfence_event::{Event, EventKind, SourceKind, Timestamp};
    use ringfence_sensor::StopSignal;
    use std::time::{Duration, Instant};

    let tmp = std::env::temp_dir().join(format!("ringfence-bench-content-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let result = (|| -> CmdResult {
        let merged = tmp.join("content");
        let mut files = 0;
        for (i, dir) in args.rules.iter().enumerate() {
            for part in ["rules", "tests"] {
                let from = dir.join(part);
                if from.is_dir() {
                    files += copy_tree(&from, &merged.join(part).join(format!("{i}")))?;
                }
            }
        }
        let keys_dir = tmp.join("keys");
        let keys = init_keys(&keys_dir, &KeysInitOptions::new(UnixTime::now()))
            .map_err(Failure::refused)?;
        let engine = default_engine();
        let opts = BuildOptions::new(1, agent_schema(), UnixTime::now());
        let started = Instant::now();
        let built = build_signed_bundle(&merged, &opts, &keys, &*engine.validator)
            .map_err(|e| Failure::refused(anyhow!("{e}")))?;
        let build_time = started.elapsed();
        let bytes = built.signed.encode();
        print_line(&format!(
            "bundle: {} files from {} dir(s), {} rules, {} bytes, built in {} ms (validator: {})",
            files,
            args.rules.len(),
            built.report.rules,
            bytes.len(),
            build_time.as_millis(),
            engine.name
        ))
        .context("writing to stdout")?;

        let drop_dir = tmp.join("drop");
        std::fs::create_dir_all(&drop_dir).context("creating the content dir")?;
        let section = ContentSection {
            dir: Some(drop_dir.clone()),
            root: Some(keys_dir.clone()),
            poll_ms: 10,
            sample_events: args.sample_events,
            shadow_secs: args.shadow_secs,
            confirm_secs: 0,
            ..ContentSection::default()
        };
        let opts =
            ringfence_agent::content::ManagerOptions::from_section(&section, default_engine())
                .ok_or_else(|| anyhow!("no content dir"))?;
        let state_dir = opts.state_dir.clone();
        let stop = StopSignal::new();
        let (manager, mut detector) =
            ringfence_agent::content::ContentManager::start(opts, stop.clone())
                .map_err(|e| anyhow!("{e}"))?;
        let mut event = Event::new(EventKind::ProcessExec, SourceKind::Replay, Timestamp::now());
        event.host_name = Some("bench".into());
        for _ in 0..args.sample_events {
            detector.on_event(&event, &mut |_| {});
        }
        let landed = Instant::now();
        ringfence_content::store::atomic_write(&drop_dir.join("1.bundle"), &bytes)
            .context("dropping the bundle")?;
        let deadline = Instant::now() + Duration::from_secs(600);
        while detector.active_version() != Some(1) {
            if Instant::now() > deadline {
                return Err(anyhow!("the bundle did not become active within 600 s").into());
            }
            detector.on_event(&event, &mut |_| {});
            std::thread::sleep(Duration::from_millis(1));
        }
        let wall = landed.elapsed();
        stop.stop();
        let timings = manager.last_activation();
        manager.join();
        if let Some(t) = timings {
            print_line(&format!(
                "landing to active: {} ms wall (poll 10 ms); verify+validate {} ms, compile {} ms, \
                 probation over {} sample events {} ms, shadow {} ms; {} rules, {} disabled",
                wall.as_millis(),
                t.verify.as_millis(),
                t.compile.as_millis(),
                t.sample_events,
                t.sample_probation.as_millis(),
                t.shadow.as_millis(),
                t.rules,
                t.disabled
            ))
            .context("writing to stdout")?;
        }

        // Worker restart: spawn → first event written, with the content above active.
        let exe = std::env::current_exe().context("finding the ringfence binary")?;
        let mut times = Vec::new();
        for i in 0..args.restarts {
            let out = tmp.join(format!("worker-{i}.jsonl"));
            let marker = format!("ringfence-bench-restart-{}-{i}", std::process::id());
            let started = Instant::now();
            let mut child = std::process::Command::new(&exe)
                .args(["agent", "worker", "--mode", "driverless", "--output"])
                .arg(format!("jsonl:{}", out.display()))
                .arg("--content-dir")
                .arg(&drop_dir)
                .arg("--state-dir")
                .arg(&state_dir)
                .arg("--root")
                .arg(&keys_dir)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .context("starting a worker")?;
            let deadline = Instant::now() + Duration::from_secs(60);
            let ready = loop {
                let _ = std::process::Command::new("/bin/true")
                    .arg(&marker)
                    .status();
                if std::fs::read_to_string(&out).is_ok_and(|t| t.contains(&marker)) {
                    break Some(started.elapsed());
                }
                if Instant::now() > deadline || child.try_wait().ok().flatten().is_some() {
                    break None;
                }
                std::thread::sleep(Duration::from_millis(10));
            };
            let _ = std::process::Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let _ = child.wait();
            match ready {
                Some(t) => times.push(t),
                None => print_line("worker restart: the worker reported no event within 60 s")
                    .context("writing to stdout")?,
            }
        }
        times.sort();
        if let Some(median) = times.get(times.len() / 2) {
            print_line(&format!(
                "worker restart: first backoff 100 ms + start to first event {} ms (median of {}, \
                 min {} ms, max {} ms)",
                median.as_millis(),
                times.len(),
                times.first().map_or(0, Duration::as_millis),
                times.last().map_or(0, Duration::as_millis)
            ))
            .context("writing to stdout")?;
        }
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&tmp);
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringfence_content::{MaintenanceError, VerifyError, verify_maintenance_token};

    fn args(keys: &Path, valid_for: &str, out: Option<PathBuf>) -> MaintenanceTokenArgs {
        MaintenanceTokenArgs {
            keys: keys.to_owned(),
            action: MaintenanceAction::Stop,
            host: "web-01".into(),
            valid_for: valid_for.into(),
            reason: "CHG-1: test".into(),
            out,
        }
    }

    #[test]
    fn maintenance_token_writes_a_token_the_agent_accepts() {
        let tmp = tempfile::tempdir().unwrap();
        let keys_dir = tmp.path().join("keys");
        let keys = init_keys(&keys_dir, &KeysInitOptions::new(UnixTime::now())).unwrap();
        let out = tmp.path().join("stop.token");
        maintenance_token(&args(&keys_dir, "30m", Some(out.clone()))).unwrap();
        let token = std::fs::read(&out).unwrap();
        let now = UnixTime::now();
        let claims = verify_maintenance_token(&token, keys.trusted_root(), "web-01", now).unwrap();
        assert_eq!(claims.action, MaintenanceAction::Stop);
        assert!(claims.expires.0 - claims.issued.0 == 1_800);
        let err = verify_maintenance_token(&token, keys.trusted_root(), "web-02", now).unwrap_err();
        assert!(matches!(
            err,
            VerifyError::Maintenance(MaintenanceError::WrongHost { .. })
        ));
        // More than 7 days, fractions of a second and nonsense are refused before signing.
        for (bad, needle) in [
            ("8d", "longest allowed is 604800 s"),
            ("1500ms", "whole seconds only"),
            ("soon", "expected a number"),
        ] {
            let err = maintenance_token(&args(&keys_dir, bad, None)).unwrap_err();
            assert_eq!(err.code, 1, "{bad}");
            assert!(
                err.error.to_string().contains(needle),
                "{bad}: {}",
                err.error
            );
        }
    }
}
