//! The operator's connection to a console, shared by `ringfence rollout` and `ringfence fleet
//! order(s)`: the console URL (flag or environment), the operator token (environment or a
//! 0600 file, never argv, where every local user reads it in the process list), an HTTP
//! client, how its errors become exit codes, and a runtime to wait on it.

use std::path::PathBuf;

use anyhow::Context;
use ringfence_wire::{CaPin, Client, ClientError, Trust};

use crate::Failure;

/// `--console` (or `RINGFENCE_CONSOLE`) and the operator token from `RINGFENCE_TOKEN` or
/// `--token-file`.
#[derive(Debug, clap::Args)]
pub struct ConsoleArgs {
    /// Console base URL.
    #[arg(
        long,
        env = "RINGFENCE_CONSOLE",
        default_value = "https://127.0.0.1:8650",
        global = true
    )]
    pub console: String,
    /// The console CA's SHA-256 pin (`console serve` and `up` print it); repeat while a CA
    /// rotates. Or `RINGFENCE_CA_SHA256` (comma-separated).
    #[arg(
        long = "ca-sha256",
        env = "RINGFENCE_CA_SHA256",
        value_delimiter = ',',
        global = true
    )]
    pub ca_sha256: Vec<String>,
    /// Or a PEM file with the console's CA certificate.
    #[arg(long, env = "RINGFENCE_CA_FILE", global = true)]
    pub ca_file: Option<PathBuf>,
    /// Plain `http://` to a console on loopback (tests and drills only).
    #[arg(long, env = "RINGFENCE_PLAIN_HTTP", global = true, hide = true)]
    pub plain_http: bool,
    /// A file (mode 0600 or stricter) holding the operator API token (`rfo1.…`). Or the
    /// token itself in `RINGFENCE_TOKEN`.
    #[arg(long = "token-file", env = "RINGFENCE_TOKEN_FILE", global = true)]
    pub token_file: Option<PathBuf>,
    /// Refused: a token on the command line is in every local user's process list.
    #[arg(long = "token", hide = true, global = true)]
    pub token_argv: Option<String>,
}

/// The most bytes a token file may hold.
const TOKEN_FILE_MAX: u64 = 4096;

/// The operator token: `RINGFENCE_TOKEN`, else the `--token-file`. A token given as `--token`
/// is refused (usage error) before anything is sent, naming the two safe ways.
pub fn operator_token(
    argv: Option<&str>,
    file: Option<&std::path::Path>,
) -> Result<Option<String>, Failure> {
    let usage = |e: String| Failure {
        code: 2,
        error: anyhow::anyhow!(e),
    };
    if argv.is_some() {
        return Err(usage(
            "--token puts the operator token in the process list, where every local user reads \
             it: set RINGFENCE_TOKEN, or --token-file FILE (mode 0600)"
                .into(),
        ));
    }
    if let Some(path) = file {
        return read_token_file(path).map(Some).map_err(usage);
    }
    Ok(std::env::var("RINGFENCE_TOKEN")
        .ok()
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty()))
}

fn read_token_file(path: &std::path::Path) -> Result<String, String> {
    use std::io::Read;
    use std::os::unix::fs::MetadataExt;
    let shown = path.display();
    let file = std::fs::File::open(path).map_err(|e| format!("--token-file {shown}: {e}"))?;
    let meta = file
        .metadata()
        .map_err(|e| format!("--token-file {shown}: {e}"))?;
    if meta.mode() & 0o077 != 0 {
        return Err(format!(
            "--token-file {shown}: mode {:o} lets other users read the token; chmod 600 it",
            meta.mode() & 0o777
        ));
    }
    let mut text = String::new();
    file.take(TOKEN_FILE_MAX + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("--token-file {shown}: {e}"))?;
    if text.len() as u64 > TOKEN_FILE_MAX {
        return Err(format!(
            "--token-file {shown}: over {TOKEN_FILE_MAX} bytes, not a token"
        ));
    }
    let token = text.trim();
    if token.is_empty() {
        return Err(format!("--token-file {shown}: empty"));
    }
    Ok(token.to_owned())
}

/// A client for the console and the operator token to send.
pub struct Api {
    pub client: Client,
    pub token: String,
}

impl ConsoleArgs {
    pub fn connect(&self) -> Result<Api, Failure> {
        let token = operator_token(self.token_argv.as_deref(), self.token_file.as_deref())?
            .ok_or_else(|| Failure {
                code: 2,
                error: anyhow::anyhow!(
                    "an operator token is needed: RINGFENCE_TOKEN or --token-file FILE (see \
                     `ringfence up`'s console.env or `console serve --init-operator`)"
                ),
            })?;
        let client = Client::new(&self.console, &self.trust()?).map_err(|e| Failure {
            code: 2,
            error: e.into(),
        })?;
        Ok(Api { client, token })
    }

    /// What the CLI trusts: the pinned CA, a CA file, or plain loopback HTTP when asked.
    pub fn trust(&self) -> Result<Trust, Failure> {
        let usage = |e: String| Failure {
            code: 2,
            error: anyhow::anyhow!(e),
        };
        if self.plain_http {
            return Ok(Trust::PlainLoopback);
        }
        if let Some(file) = &self.ca_file {
            return Trust::from_ca_file(file).map_err(|e| usage(e.to_string()));
        }
        let pins = self
            .ca_sha256
            .iter()
            .filter(|p| !p.trim().is_empty())
            .map(|p| CaPin::parse(p))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| usage(format!("--ca-sha256: {e}")))?;
        if pins.is_empty() {
            return Err(usage(
                "the console's CA is not pinned: --ca-sha256 PIN or RINGFENCE_CA_SHA256 (printed by \
                 `ringfence console serve` and in `ringfence up`'s console.env), or --ca-file"
                    .into(),
            ));
        }
        Ok(Trust::Pinned(pins))
    }
}

/// A console refusal (4xx) is the operator's to fix; anything else is the environment's.
pub fn client_failure(e: ClientError) -> Failure {
    match e.status() {
        Some(s) if (400..500).contains(&s) => Failure::refused(anyhow::anyhow!("{e}")),
        _ => Failure::environment(anyhow::anyhow!("{e}")),
    }
}

/// Run `f` to completion on a current-thread runtime.
pub fn block_on<T>(f: impl std::future::Future<Output = Result<T, Failure>>) -> Result<T, Failure> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(f)
}
