//! `ringfence schema`: the field schema as JSON, the contract content is validated against.

use anyhow::Context;
use ringfence_event::Schema;

use crate::CmdResult;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Indent the JSON for reading.
    #[arg(long)]
    pub pretty: bool,
}

pub fn run(args: Args) -> CmdResult {
    let schema = Schema::current();
    let text = if args.pretty {
        serde_json::to_string_pretty(&schema)
    } else {
        serde_json::to_string(&schema)
    }
    .context("serializing the schema")?;
    super::print_line(&text).context("writing the schema")?;
    Ok(())
}
