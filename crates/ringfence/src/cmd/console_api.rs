//! The operator's connection to a console, shared by `ringfence rollout` and `ringfence fleet
//! order(s)`: the console URL and operator token (flags or environment), an HTTP client, how
//! its errors become exit codes, and a runtime to wait on it.

use std::path::PathBuf;

use anyhow::Context;
use ringfence_wire::{CaPin, Client, ClientError, Trust};

use crate::Failure;

/// `--console` and `--token` (or `RINGFENCE_CONSOLE` and `RINGFENCE_TOKEN`).
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
    /// Operator API token (`rfo1.…`).
    #[arg(long, env = "RINGFENCE_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
}

/// A client for the console and the operator token to send.
pub struct Api {
    pub client: Client,
    pub token: String,
}

impl ConsoleArgs {
    pub fn connect(&self) -> Result<Api, Failure> {
        let token = self.token.clone().ok_or_else(|| Failure {
            code: 2,
            error: anyhow::anyhow!(
                "an operator token is needed: --token or RINGFENCE_TOKEN (see `ringfence up` or \
                 `console serve --init-operator`)"
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
