//! Sieve mail filtering (RFC 5228) without I/O: [`parse`] checks a script
//! and gives line-numbered errors; [`run`] applies one to a message for
//! one recipient and returns the actions. Both are bounded by [`Limits`],
//! so a hostile script can neither stall delivery nor lose the message.
//!
//! Extensions: fileinto, reject and ereject (RFC 5429), envelope,
//! encoded-character, imap4flags (5232), variables (5229), relational
//! (5231), subaddress (5233), copy (3894), body (5173), date and index
//! (5260), vacation (5230) with vacation-seconds (6131), mailbox (5490),
//! regex (draft-ietf-sieve-regex) and include (6609).
//!
//! - [`lexer`], [`parser`]: tokens, then the grammar and each command's
//!   and test's arguments, into an [`ast::Script`].
//! - [`interp`]: the run.
//! - [`matching`]: comparators, match types, relational tests.
//! - [`date`]: date parts and RFC 5322 dates.
//! - [`variables`]: `${...}` expansion, `set` modifiers, encoded characters.
//! - [`vacation`]: whether a vacation reply may go to a sender (RFC 5230).

pub mod ast;
pub mod date;
#[doc(hidden)]
pub mod fuzz;
pub mod interp;
pub mod lexer;
pub mod matching;
pub mod parser;
pub mod vacation;
pub mod variables;

#[cfg(test)]
mod tests;

pub use ast::Script;
pub use interp::{Action, Host, Input, Outcome, VacationAction, run};
pub use parser::{CAPABILITIES, parse};

/// A script that cannot be used, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ParseError {
    pub line: u32,
    pub message: String,
}

/// What one script may take: to parse, and to run.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Bytes of script text.
    pub max_script_size: usize,
    /// Blocks and tests inside one another.
    pub max_nesting: usize,
    /// Commands in one script.
    pub max_commands: usize,
    /// Strings in one list, arguments of one command, tests in one list,
    /// header fields or body parts looked at by one test.
    pub max_list: usize,
    /// Commands, tests and comparisons in one run, includes included.
    pub max_steps: u64,
    pub max_actions: usize,
    pub max_redirects: usize,
    pub max_include_depth: usize,
    pub max_variables: usize,
    /// Bytes of one variable's value.
    pub max_variable_size: usize,
    /// Bytes of a vacation reply's text.
    pub max_vacation_size: usize,
    /// Time one run may take, whatever its steps cost.
    pub max_time: std::time::Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_script_size: 128 * 1024,
            max_nesting: 32,
            max_commands: 5_000,
            max_list: 1_000,
            max_steps: 100_000,
            max_actions: 64,
            max_redirects: 4,
            max_include_depth: 8,
            max_variables: 256,
            max_variable_size: 4 * 1024,
            max_vacation_size: 64 * 1024,
            max_time: std::time::Duration::from_millis(500),
        }
    }
}
