//! Stratus's typed configuration and its one composition root.
//!
//! Every binary starts here: `stratus serve` and the admin commands in the
//! gateway, and each Lambda bootstrap. Settings are read once, into a
//! [`Config`]; [`Stores::open`] turns the configured backend into the
//! ports; [`stage_settings`] builds what the pipeline stages need (the
//! outbound transport with DKIM signing among it). No other crate reads a
//! `STRATUS_*` variable.
//!
//! Layout:
//! - [`config`]: defaults, the TOML file, `STRATUS_*` variables and flags,
//!   in that order of priority, parsed into typed settings (each protocol
//!   its own: [`config::SmtpLimits`], [`config::ImapSettings`], ...).
//! - [`root`]: the stores, ports and stage settings built from a config.
//! - [`role`]: the listener roles (`smtp`, `submission`, ..., `http`).
//! - [`size`], [`hostname`]: byte sizes as operators type them, and the
//!   machine's host name (the default `STRATUS_HOSTNAME`).

pub mod config;
pub mod hostname;
pub mod measured;
pub mod role;
pub mod root;
pub mod size;

pub use config::{Backend, Config, ConfigError, Flags};
pub use root::{RootError, Stores, stage_settings};
