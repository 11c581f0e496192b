//! `tenancy events ...`: the event archive.

use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum EventCmd {
    List {
        #[arg(long)]
        detail_type: Option<String>,
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long)]
        limit: Option<u32>,
    },
}
