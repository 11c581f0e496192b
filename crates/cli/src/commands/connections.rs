//! `tenancy connections ...`: named credentials for `http:invoke`, hooks and webhook
//! subscriptions, over the v1 API.
//!
//! `put` takes the kind of auth from its flags and never the credential as a flag (it
//! would land in the shell's history and the process list): the api key's value, the
//! password or the client secret is read from `--credential-file` or standard input,
//! whole, less one trailing newline. Answers are metadata only.

use std::path::PathBuf;

use clap::Subcommand;
use serde_json::{json, Value};
use tenancy_client::Client;
use tenancy_domain::connection::{AuthSpec, ConnectionSpec};

use crate::support::*;

#[derive(Debug, Subcommand)]
pub enum ConnectionCmd {
    /// Create or replace a connection: one of --api-key-header, --basic-username or
    /// --oauth-token-url with --client-id; the credential (the key's value, the
    /// password or the client secret) comes from standard input or --credential-file.
    Put {
        /// The connection's name (1-64 letters, digits, '-' and '_').
        name: String,
        /// An API key sent in this header.
        #[arg(long, conflicts_with_all = ["basic_username", "oauth_token_url"])]
        api_key_header: Option<String>,
        /// HTTP Basic with this username.
        #[arg(long, conflicts_with = "oauth_token_url")]
        basic_username: Option<String>,
        /// OAuth client credentials: the token endpoint (http or https).
        #[arg(long, requires = "client_id")]
        oauth_token_url: Option<String>,
        /// OAuth client credentials: the client id.
        #[arg(long, requires = "oauth_token_url")]
        client_id: Option<String>,
        /// OAuth client credentials: the scope asked for (space-separated).
        #[arg(long, requires = "oauth_token_url")]
        scope: Option<String>,
        /// What the connection is for, for people.
        #[arg(long)]
        description: Option<String>,
        /// Read the credential from this file instead of standard input (`-`: stdin).
        #[arg(long)]
        credential_file: Option<PathBuf>,
    },
    /// List connections (metadata only, never credentials).
    List,
    /// A connection's metadata (never its credential).
    Get {
        /// The connection's name.
        name: String,
    },
    /// Delete a connection (what names it then fails to call; asks first).
    Delete {
        /// The connection's name.
        name: String,
        #[command(flatten)]
        confirm: Confirm,
    },
}

pub const CONNECTION_COLUMNS: &[&str] = &["name", "auth", "description", "updated_at", "deleted"];

pub async fn connections(c: &Client, cmd: ConnectionCmd) -> Result<Value, CliError> {
    Ok(match cmd {
        ConnectionCmd::Put {
            name,
            api_key_header,
            basic_username,
            oauth_token_url,
            client_id,
            scope,
            description,
            credential_file,
        } => {
            let auth = match (api_key_header, basic_username, oauth_token_url, client_id) {
                (Some(header), None, None, None) => {
                    AuthSpec::ApiKey { header, value: read_secret_input(credential_file.as_ref(), "the credential")? }
                }
                (None, Some(username), None, None) => AuthSpec::Basic {
                    username,
                    password: read_secret_input(credential_file.as_ref(), "the credential")?,
                },
                (None, None, Some(token_url), Some(client_id)) => AuthSpec::OauthClientCredentials {
                    token_url,
                    client_id,
                    client_secret: read_secret_input(credential_file.as_ref(), "the credential")?,
                    scope,
                },
                _ => {
                    return Err(CliError::Usage(
                        "give one of --api-key-header, --basic-username, or --oauth-token-url with --client-id".into(),
                    ))
                }
            };
            to_json(c.connection_put(&name, &ConnectionSpec { auth, description }).await?)
        }
        ConnectionCmd::List => to_json(c.connection_list().await?),
        ConnectionCmd::Get { name } => to_json(c.connection_get(&name).await?),
        ConnectionCmd::Delete { name, confirm: yes } => {
            confirm(yes, &format!("delete connection {name}"))?;
            c.connection_delete(&name).await?;
            json!({"name": name, "deleted": true})
        }
    })
}
