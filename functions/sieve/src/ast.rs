//! A checked script: every command and test known, its arguments typed,
//! each extension it uses required. The interpreter walks this.

use crate::matching::{Comparator, MatchType};
use crate::variables::Modifier;

#[derive(Debug, Clone, PartialEq)]
pub struct Script {
    /// The capabilities the script requires.
    pub requires: Vec<String>,
    pub commands: Vec<Command>,
}

impl Script {
    pub fn requires(&self, capability: &str) -> bool {
        self.requires.iter().any(|r| r == capability)
    }
}

/// A command and the line it starts on.
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    pub line: u32,
    pub kind: CommandKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum CommandKind {
    /// `if` with its `elsif`s, and the `else`.
    If {
        branches: Vec<(Test, Vec<Command>)>,
        otherwise: Option<Vec<Command>>,
    },
    Stop,
    Keep {
        flags: Option<Vec<String>>,
    },
    Discard,
    FileInto {
        mailbox: String,
        copy: bool,
        create: bool,
        flags: Option<Vec<String>>,
    },
    Redirect {
        address: String,
        copy: bool,
    },
    /// `reject` (extended: `ereject`).
    Reject {
        reason: String,
        extended: bool,
    },
    Vacation(Box<Vacation>),
    /// `setflag`, `addflag`, `removeflag`.
    Flags {
        op: FlagOp,
        variable: Option<String>,
        flags: Vec<String>,
    },
    Set {
        name: String,
        value: String,
        modifiers: Vec<Modifier>,
    },
    Include {
        global: bool,
        name: String,
        once: bool,
        optional: bool,
    },
    Return,
    Global {
        names: Vec<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagOp {
    Set,
    Add,
    Remove,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Vacation {
    /// The period between two replies to one sender, in seconds (`:days`
    /// times a day, or `:seconds`); `None`: the default.
    pub period: Option<u64>,
    pub subject: Option<String>,
    pub from: Option<String>,
    pub addresses: Vec<String>,
    pub mime: bool,
    pub handle: Option<String>,
    pub reason: String,
}

/// How a match compares: the match type and the comparator.
#[derive(Debug, Clone, PartialEq)]
pub struct Match {
    pub kind: MatchType,
    pub comparator: Comparator,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressPart {
    All,
    LocalPart,
    Domain,
    User,
    Detail,
}

/// `:index N [:last]` (RFC 5260): which occurrence of a header field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Index {
    pub n: u64,
    pub last: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Zone {
    /// The moment shown in the server's zone (UTC here).
    Local,
    /// `:zone "+hhmm"`.
    Fixed(String),
    /// `:originalzone`: the zone the date was written in.
    Original,
}

#[derive(Debug, Clone, PartialEq)]
pub enum BodyTransform {
    Raw,
    /// `:content` with the MIME types to look in.
    Content(Vec<String>),
    Text,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Test {
    True,
    False,
    Not(Box<Test>),
    AllOf(Vec<Test>),
    AnyOf(Vec<Test>),
    Address {
        m: Match,
        part: AddressPart,
        index: Option<Index>,
        headers: Vec<String>,
        keys: Vec<String>,
    },
    Envelope {
        m: Match,
        part: AddressPart,
        parts: Vec<String>,
        keys: Vec<String>,
    },
    Header {
        m: Match,
        index: Option<Index>,
        headers: Vec<String>,
        keys: Vec<String>,
    },
    Exists(Vec<String>),
    Size {
        over: bool,
        limit: u64,
    },
    Body {
        m: Match,
        transform: BodyTransform,
        keys: Vec<String>,
    },
    Date {
        m: Match,
        zone: Zone,
        index: Option<Index>,
        header: String,
        part: String,
        keys: Vec<String>,
    },
    CurrentDate {
        m: Match,
        zone: Zone,
        part: String,
        keys: Vec<String>,
    },
    String {
        m: Match,
        sources: Vec<String>,
        keys: Vec<String>,
    },
    HasFlag {
        m: Match,
        variables: Vec<String>,
        flags: Vec<String>,
    },
    MailboxExists(Vec<String>),
}
