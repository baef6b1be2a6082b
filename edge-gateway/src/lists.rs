//! `stratus list ...`: distribution lists from the command line.

use std::io::Write;

use stratus_core::lists::Policy;
use stratus_runtime::config::Config;

use crate::admin::refused;
use crate::service::{self, Service};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PolicyArg {
    /// Members only (others' posts are refused, or held when they come
    /// through an alias)
    Members,
    /// Anyone may post
    Anyone,
    /// Every post waits for an owner's approval
    Moderated,
}

impl From<PolicyArg> for Policy {
    fn from(p: PolicyArg) -> Policy {
        match p {
            PolicyArg::Members => Policy::Members,
            PolicyArg::Anyone => Policy::Anyone,
            PolicyArg::Moderated => Policy::Moderated,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, clap::Subcommand)]
pub enum ListCommand {
    /// Create a list at LIST (its LIST-bounces and LIST-unsubscribe
    /// addresses come with it)
    Add {
        list: String,
        /// Who may post
        #[arg(long, value_enum, default_value = "members")]
        policy: PolicyArg,
        /// An owner (repeatable): who is told of held posts
        #[arg(long = "owner", value_name = "ADDRESS")]
        owners: Vec<String>,
    },
    /// Add members (again: a member disabled by bounces is enabled)
    Subscribe {
        list: String,
        #[arg(required = true)]
        addresses: Vec<String>,
    },
    /// Remove members
    Unsubscribe {
        list: String,
        #[arg(required = true)]
        addresses: Vec<String>,
    },
    /// A list's members, with their bounces
    Members { list: String },
    /// Every list
    List,
    /// Delete a list, its members and held posts
    #[command(visible_alias = "delete")]
    Del { list: String },
    /// Posts held for the owners (not yet sent)
    Held { list: String },
    /// Send a held post to the members
    Approve { list: String, id: String },
    /// Delete a held post
    Discard { list: String, id: String },
}

use crate::admin::address_arg as address;

fn queue_id(input: &str) -> anyhow::Result<stratus_core::QueueId> {
    service::parse_held_id(input).map_err(refused)
}

pub async fn list(
    command: &ListCommand,
    config: &Config,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let service = Service::open(config).await.map_err(refused)?;
    match command {
        ListCommand::Add {
            list,
            policy,
            owners,
        } => {
            let list = address(list)?;
            let owners = owners
                .iter()
                .map(|o| address(o))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let added = service
                .add_list(&list, (*policy).into(), owners)
                .await
                .map_err(refused)?;
            writeln!(
                out,
                "added list {} ({}); bounces to {}, unsubscribe at {}",
                added.address,
                added.policy.as_str(),
                added.bounce_address(),
                added.unsubscribe_address()
            )?;
        }
        ListCommand::Subscribe { list, addresses }
        | ListCommand::Unsubscribe { list, addresses } => {
            let list = address(list)?;
            let members = addresses
                .iter()
                .map(|a| address(a))
                .collect::<anyhow::Result<Vec<_>>>()?;
            if matches!(command, ListCommand::Subscribe { .. }) {
                let n = service.subscribe(&list, &members).await.map_err(refused)?;
                writeln!(out, "{n} subscribed to {list}")?;
            } else {
                let n = service
                    .unsubscribe(&list, &members)
                    .await
                    .map_err(refused)?;
                writeln!(out, "{n} unsubscribed from {list}")?;
            }
        }
        ListCommand::Members { list } => {
            let list = address(list)?;
            for m in service.members(&list).await.map_err(refused)? {
                let state = if m.disabled {
                    format!("  disabled after {} bounces", m.bounces)
                } else if m.bounces > 0 {
                    format!("  {} bounces", m.bounces)
                } else {
                    String::new()
                };
                writeln!(out, "{}{state}", m.address)?;
            }
        }
        ListCommand::List => {
            for (list, members) in service.lists().await.map_err(refused)? {
                writeln!(
                    out,
                    "{}  {}  {members} member{}",
                    list.address,
                    list.policy.as_str(),
                    if members == 1 { "" } else { "s" }
                )?;
            }
        }
        ListCommand::Del { list } => {
            let list = address(list)?;
            service.del_list(&list).await.map_err(refused)?;
            writeln!(out, "deleted list {list}")?;
        }
        ListCommand::Held { list } => {
            let list = address(list)?;
            for held in service.held_posts(&list).await.map_err(refused)? {
                if held.distributed {
                    continue;
                }
                let from = held
                    .message
                    .envelope
                    .mail_from
                    .as_ref()
                    .map_or("<>".to_string(), ToString::to_string);
                let approved = if held.approved { "  (approved)" } else { "" };
                writeln!(
                    out,
                    "{}  from {from}  {}{approved}",
                    held.message.queue_id, held.why
                )?;
            }
        }
        ListCommand::Approve { list, id } => {
            let (list, id) = (address(list)?, queue_id(id)?);
            service.approve_post(&list, &id).await.map_err(refused)?;
            writeln!(out, "approved {id}: on its way to the members of {list}")?;
        }
        ListCommand::Discard { list, id } => {
            let (list, id) = (address(list)?, queue_id(id)?);
            service.discard_post(&list, &id).await.map_err(refused)?;
            writeln!(out, "discarded {id}")?;
        }
    }
    Ok(())
}
