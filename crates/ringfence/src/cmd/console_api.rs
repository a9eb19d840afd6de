//! The operator's connection to a console, shared by `ringfence rollout` and `ringfence fleet
//! order(s)`: the console URL and operator token (flags or environment), an HTTP client, how
//! its errors become exit codes, and a runtime to wait on it.

use anyhow::Context;
use ringfence_wire::{Client, ClientError};

use crate::Failure;

/// `--console` and `--token` (or `RINGFENCE_CONSOLE` and `RINGFENCE_TOKEN`).
#[derive(Debug, clap::Args)]
pub struct ConsoleArgs {
    /// Console base URL.
    #[arg(
        long,
        env = "RINGFENCE_CONSOLE",
        default_value = "http://127.0.0.1:8650",
        global = true
    )]
    pub console: String,
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
        let client = Client::new(&self.console).map_err(|e| Failure {
            code: 2,
            error: e.into(),
        })?;
        Ok(Api { client, token })
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
