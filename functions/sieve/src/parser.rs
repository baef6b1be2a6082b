//! From tokens to a checked [`Script`]: first the generic grammar of RFC
//! 5228 section 8.2 (commands, arguments, tests, blocks), bounded in depth
//! and size; then each command and test against what it accepts, with the
//! extensions it needs required. Every error names its line.

use std::collections::VecDeque;

use crate::ast::*;
use crate::lexer::{Lexed, Token, lex};
use crate::matching::{self, Comparator, MatchType, Relation};
use crate::{Limits, ParseError, date, variables};

/// The extensions this interpreter implements, as `require` names them.
pub const CAPABILITIES: &[&str] = &[
    "fileinto",
    "reject",
    "ereject",
    "envelope",
    "encoded-character",
    "imap4flags",
    "variables",
    "relational",
    "subaddress",
    "copy",
    "body",
    "date",
    "index",
    "vacation",
    "vacation-seconds",
    "mailbox",
    "regex",
    "include",
    "comparator-i;ascii-numeric",
    "comparator-i;octet",
    "comparator-i;ascii-casemap",
];

/// Parses and checks `script`.
pub fn parse(script: &str, limits: &Limits) -> Result<Script, ParseError> {
    if script.len() > limits.max_script_size {
        return Err(ParseError {
            line: 1,
            message: format!(
                "script is {} bytes; at most {} are allowed",
                script.len(),
                limits.max_script_size
            ),
        });
    }
    let tokens = lex(script)?;
    let mut raw = RawParser {
        tokens: tokens.into(),
        limits,
        commands: 0,
        last_line: 1,
    };
    let commands = raw.commands(0)?;
    if let Some(t) = raw.tokens.front() {
        return Err(ParseError {
            line: t.line,
            message: "unexpected }".into(),
        });
    }
    let mut checker = Checker {
        requires: Vec::new(),
    };
    let commands = checker.block(commands, true)?;
    Ok(Script {
        requires: checker.requires,
        commands,
    })
}

// ---------------------------------------------------------------------
// The generic grammar.

#[derive(Debug)]
struct RawCommand {
    name: String,
    line: u32,
    args: Vec<RawArg>,
    tests: Vec<RawTest>,
    block: Option<Vec<RawCommand>>,
}

#[derive(Debug)]
struct RawTest {
    name: String,
    line: u32,
    args: Vec<RawArg>,
    tests: Vec<RawTest>,
}

#[derive(Debug, Clone)]
enum RawArg {
    Tag(String, u32),
    Number(u64, u32),
    /// A string list; `false` when written as one string.
    Strings(Vec<String>, bool, u32),
}

impl RawArg {
    fn line(&self) -> u32 {
        match self {
            RawArg::Tag(_, l) | RawArg::Number(_, l) | RawArg::Strings(_, _, l) => *l,
        }
    }
}

struct RawParser<'a> {
    tokens: VecDeque<Lexed>,
    limits: &'a Limits,
    commands: usize,
    last_line: u32,
}

impl RawParser<'_> {
    fn error(&self, line: u32, message: impl Into<String>) -> ParseError {
        ParseError {
            line,
            message: message.into(),
        }
    }

    fn next(&mut self) -> Option<Lexed> {
        let t = self.tokens.pop_front();
        if let Some(t) = &t {
            self.last_line = t.line;
        }
        t
    }

    fn peek(&self) -> Option<&Token> {
        self.tokens.front().map(|t| &t.token)
    }

    fn deeper(&self, depth: usize, line: u32) -> Result<usize, ParseError> {
        if depth >= self.limits.max_nesting {
            return Err(self.error(
                line,
                format!("nested more than {} deep", self.limits.max_nesting),
            ));
        }
        Ok(depth + 1)
    }

    /// Commands up to the end of the script or a `}` (left unread).
    fn commands(&mut self, depth: usize) -> Result<Vec<RawCommand>, ParseError> {
        let mut out = Vec::new();
        while let Some(t) = self.peek() {
            if *t == Token::RightBrace {
                break;
            }
            out.push(self.command(depth)?);
        }
        Ok(out)
    }

    fn command(&mut self, depth: usize) -> Result<RawCommand, ParseError> {
        let Some(Lexed { token, line }) = self.next() else {
            return Err(self.error(self.last_line, "a command is missing"));
        };
        let Token::Identifier(name) = token else {
            return Err(self.error(line, format!("expected a command, found {}", show(&token))));
        };
        self.commands += 1;
        if self.commands > self.limits.max_commands {
            return Err(self.error(
                line,
                format!("more than {} commands", self.limits.max_commands),
            ));
        }
        let (args, tests) = self.arguments(depth, line)?;
        let block = match self.next() {
            Some(Lexed {
                token: Token::Semicolon,
                ..
            }) => None,
            Some(Lexed {
                token: Token::LeftBrace,
                line: open,
            }) => {
                let inner = self.deeper(depth, open)?;
                let block = self.commands(inner)?;
                match self.next() {
                    Some(Lexed {
                        token: Token::RightBrace,
                        ..
                    }) => Some(block),
                    _ => return Err(self.error(open, "block not closed with }")),
                }
            }
            Some(other) => {
                return Err(self.error(
                    other.line,
                    format!(
                        "expected ; or {{ after {name}, found {}",
                        show(&other.token)
                    ),
                ));
            }
            None => return Err(self.error(self.last_line, format!("{name} is not ended by ;"))),
        };
        Ok(RawCommand {
            name,
            line,
            args,
            tests,
            block,
        })
    }

    /// Arguments, then an optional test or parenthesised test list.
    fn arguments(
        &mut self,
        depth: usize,
        line: u32,
    ) -> Result<(Vec<RawArg>, Vec<RawTest>), ParseError> {
        let mut args = Vec::new();
        while let Some(Token::Tag(_) | Token::Number(_) | Token::String(_) | Token::LeftBracket) =
            self.peek()
        {
            args.push(self.argument()?);
            if args.len() > self.limits.max_list {
                return Err(self.error(line, "too many arguments"));
            }
        }
        let tests = match self.peek() {
            Some(Token::Identifier(_)) => vec![self.test(depth)?],
            Some(Token::LeftParen) => {
                let open = self.next().map_or(line, |t| t.line);
                let inner = self.deeper(depth, open)?;
                let mut tests = vec![self.test(inner)?];
                loop {
                    match self.next() {
                        Some(Lexed {
                            token: Token::Comma,
                            ..
                        }) => {
                            tests.push(self.test(inner)?);
                            if tests.len() > self.limits.max_list {
                                return Err(self.error(open, "too many tests in one list"));
                            }
                        }
                        Some(Lexed {
                            token: Token::RightParen,
                            ..
                        }) => break,
                        _ => return Err(self.error(open, "test list not closed with )")),
                    }
                }
                tests
            }
            _ => Vec::new(),
        };
        Ok((args, tests))
    }

    fn test(&mut self, depth: usize) -> Result<RawTest, ParseError> {
        let Some(Lexed { token, line }) = self.next() else {
            return Err(self.error(self.last_line, "a test is missing"));
        };
        let Token::Identifier(name) = token else {
            return Err(self.error(line, format!("expected a test, found {}", show(&token))));
        };
        let inner = self.deeper(depth, line)?;
        let (args, tests) = self.arguments(inner, line)?;
        Ok(RawTest {
            name,
            line,
            args,
            tests,
        })
    }

    fn argument(&mut self) -> Result<RawArg, ParseError> {
        let Some(Lexed { token, line }) = self.next() else {
            return Err(self.error(self.last_line, "an argument is missing"));
        };
        Ok(match token {
            Token::Tag(t) => RawArg::Tag(t, line),
            Token::Number(n) => RawArg::Number(n, line),
            Token::String(s) => RawArg::Strings(vec![s], false, line),
            Token::LeftBracket => {
                let mut list = Vec::new();
                loop {
                    match self.next() {
                        Some(Lexed {
                            token: Token::String(s),
                            ..
                        }) => list.push(s),
                        _ => return Err(self.error(line, "a string list holds strings")),
                    }
                    if list.len() > self.limits.max_list {
                        return Err(self.error(
                            line,
                            format!("a list of more than {} strings", self.limits.max_list),
                        ));
                    }
                    match self.next() {
                        Some(Lexed {
                            token: Token::Comma,
                            ..
                        }) => {}
                        Some(Lexed {
                            token: Token::RightBracket,
                            ..
                        }) => break,
                        _ => return Err(self.error(line, "string list not closed with ]")),
                    }
                }
                RawArg::Strings(list, true, line)
            }
            other => return Err(self.error(line, format!("unexpected {}", show(&other)))),
        })
    }
}

fn show(t: &Token) -> String {
    match t {
        Token::Identifier(i) => format!("\"{i}\""),
        Token::Tag(t) => format!(":{t}"),
        Token::Number(n) => n.to_string(),
        Token::String(_) => "a string".into(),
        Token::LeftBracket => "[".into(),
        Token::RightBracket => "]".into(),
        Token::LeftParen => "(".into(),
        Token::RightParen => ")".into(),
        Token::LeftBrace => "{".into(),
        Token::RightBrace => "}".into(),
        Token::Comma => ",".into(),
        Token::Semicolon => ";".into(),
    }
}

// ---------------------------------------------------------------------
// Checking commands and tests.

struct Checker {
    requires: Vec<String>,
}

/// Tagged arguments taken off the front of an argument list.
struct Tagged {
    name: String,
    line: u32,
    tags: Vec<(String, Option<RawArg>, u32)>,
    positional: VecDeque<RawArg>,
}

/// The tags that take a value after them.
const VALUED_TAGS: &[&str] = &[
    "comparator",
    "value",
    "count",
    "index",
    "zone",
    "days",
    "seconds",
    "subject",
    "from",
    "addresses",
    "handle",
    "flags",
    "content",
];

impl Tagged {
    fn new(name: &str, line: u32, args: Vec<RawArg>) -> Result<Tagged, ParseError> {
        let mut tags = Vec::new();
        let mut positional = VecDeque::new();
        let mut args: VecDeque<RawArg> = args.into();
        while let Some(arg) = args.pop_front() {
            match arg {
                RawArg::Tag(tag, at) => {
                    if !positional.is_empty() {
                        return Err(ParseError {
                            line: at,
                            message: format!(":{tag} must come before {name}'s other arguments"),
                        });
                    }
                    if tags.iter().any(|(t, _, _)| *t == tag) {
                        return Err(ParseError {
                            line: at,
                            message: format!(":{tag} given twice"),
                        });
                    }
                    let value = if VALUED_TAGS.contains(&tag.as_str()) {
                        match args.pop_front() {
                            Some(v @ (RawArg::Strings(..) | RawArg::Number(..))) => Some(v),
                            _ => {
                                return Err(ParseError {
                                    line: at,
                                    message: format!(":{tag} needs a value after it"),
                                });
                            }
                        }
                    } else {
                        None
                    };
                    tags.push((tag, value, at));
                }
                other => positional.push_back(other),
            }
        }
        Ok(Tagged {
            name: name.to_string(),
            line,
            tags,
            positional,
        })
    }

    fn error(&self, message: impl Into<String>) -> ParseError {
        ParseError {
            line: self.line,
            message: message.into(),
        }
    }

    fn flag(&mut self, tag: &str) -> bool {
        match self
            .tags
            .iter()
            .position(|(t, v, _)| t == tag && v.is_none())
        {
            Some(i) => {
                self.tags.remove(i);
                true
            }
            None => false,
        }
    }

    fn value(&mut self, tag: &str) -> Option<(RawArg, u32)> {
        let i = self.tags.iter().position(|(t, _, _)| t == tag)?;
        let (_, v, at) = self.tags.remove(i);
        v.map(|v| (v, at))
    }

    /// Which of `choices` was given, at most one.
    fn one_of(&mut self, choices: &[&str]) -> Result<Option<String>, ParseError> {
        let given: Vec<String> = self
            .tags
            .iter()
            .filter(|(t, v, _)| v.is_none() && choices.contains(&t.as_str()))
            .map(|(t, _, _)| t.clone())
            .collect();
        if given.len() > 1 {
            return Err(self.error(format!(
                ":{} and :{} cannot be used together",
                given[0], given[1]
            )));
        }
        Ok(given.into_iter().next().inspect(|g| {
            self.flag(g);
        }))
    }

    fn positional(&mut self, what: &str) -> Result<RawArg, ParseError> {
        self.positional
            .pop_front()
            .ok_or_else(|| self.error(format!("{} needs {what}", self.name)))
    }

    /// No tags or arguments left over.
    fn finish(self) -> Result<(), ParseError> {
        if let Some((tag, _, at)) = self.tags.first() {
            return Err(ParseError {
                line: *at,
                message: format!("{} does not take :{tag}", self.name),
            });
        }
        if let Some(arg) = self.positional.front() {
            return Err(ParseError {
                line: arg.line(),
                message: format!("too many arguments for {}", self.name),
            });
        }
        Ok(())
    }
}

impl Checker {
    fn has(&self, capability: &str) -> bool {
        self.requires.iter().any(|r| r == capability)
    }

    fn need(&self, capability: &str, what: &str, line: u32) -> Result<(), ParseError> {
        if self.has(capability) {
            Ok(())
        } else {
            Err(ParseError {
                line,
                message: format!("{what} needs require \"{capability}\""),
            })
        }
    }

    /// A string as the script means it: encoded characters decoded when
    /// that extension is required.
    fn text(&self, s: String, line: u32) -> Result<String, ParseError> {
        if self.has("encoded-character") {
            variables::decode_encoded_characters(&s).map_err(|message| ParseError { line, message })
        } else {
            Ok(s)
        }
    }

    fn string(&self, arg: RawArg, what: &str) -> Result<String, ParseError> {
        match arg {
            RawArg::Strings(mut list, false, line) if list.len() == 1 => {
                self.text(list.remove(0), line)
            }
            other => Err(ParseError {
                line: other.line(),
                message: format!("{what} must be one string"),
            }),
        }
    }

    fn strings(&self, arg: RawArg, what: &str) -> Result<Vec<String>, ParseError> {
        match arg {
            RawArg::Strings(list, _, line) => {
                list.into_iter().map(|s| self.text(s, line)).collect()
            }
            other => Err(ParseError {
                line: other.line(),
                message: format!("{what} must be a string or a list of strings"),
            }),
        }
    }

    fn number(&self, arg: RawArg, what: &str) -> Result<u64, ParseError> {
        match arg {
            RawArg::Number(n, _) => Ok(n),
            other => Err(ParseError {
                line: other.line(),
                message: format!("{what} must be a number"),
            }),
        }
    }

    /// A block of commands; `top`: `require` is allowed at its start.
    fn block(&mut self, raw: Vec<RawCommand>, top: bool) -> Result<Vec<Command>, ParseError> {
        let mut out: Vec<Command> = Vec::new();
        let mut requires_allowed = top;
        for c in raw {
            let line = c.line;
            if c.name == "require" {
                if !requires_allowed {
                    return Err(ParseError {
                        line,
                        message: "require must come before any other command".into(),
                    });
                }
                self.require(c)?;
                continue;
            }
            requires_allowed = false;
            match c.name.as_str() {
                "elsif" | "else" => {
                    let name = c.name.clone();
                    let Some(Command {
                        kind:
                            CommandKind::If {
                                branches,
                                otherwise,
                            },
                        ..
                    }) = out.last_mut()
                    else {
                        return Err(ParseError {
                            line,
                            message: format!("{name} without an if before it"),
                        });
                    };
                    if otherwise.is_some() {
                        return Err(ParseError {
                            line,
                            message: format!("{name} after else"),
                        });
                    }
                    if name == "elsif" {
                        let (test, block) = self.conditional(c)?;
                        branches.push((test, block));
                    } else {
                        if !c.args.is_empty() || !c.tests.is_empty() {
                            return Err(ParseError {
                                line,
                                message: "else takes no arguments".into(),
                            });
                        }
                        let Some(block) = c.block else {
                            return Err(ParseError {
                                line,
                                message: "else needs a block".into(),
                            });
                        };
                        *otherwise = Some(self.block(block, false)?);
                    }
                }
                "if" => {
                    let (test, block) = self.conditional(c)?;
                    out.push(Command {
                        line,
                        kind: CommandKind::If {
                            branches: vec![(test, block)],
                            otherwise: None,
                        },
                    });
                }
                _ => {
                    let kind = self.command(c)?;
                    out.push(Command { line, kind });
                }
            }
        }
        Ok(out)
    }

    fn require(&mut self, c: RawCommand) -> Result<(), ParseError> {
        if c.block.is_some() || !c.tests.is_empty() || c.args.len() != 1 {
            return Err(ParseError {
                line: c.line,
                message: "require takes one string or list of strings".into(),
            });
        }
        let names = self.strings(c.args.into_iter().next().expect("one argument"), "require")?;
        for name in names {
            let name = name.to_ascii_lowercase();
            if !CAPABILITIES.contains(&name.as_str()) {
                return Err(ParseError {
                    line: c.line,
                    message: format!("unsupported extension \"{name}\""),
                });
            }
            if !self.requires.contains(&name) {
                self.requires.push(name);
            }
        }
        Ok(())
    }

    fn conditional(&mut self, c: RawCommand) -> Result<(Test, Vec<Command>), ParseError> {
        let line = c.line;
        if !c.args.is_empty() || c.tests.len() != 1 {
            return Err(ParseError {
                line,
                message: format!("{} takes one test", c.name),
            });
        }
        let Some(block) = c.block else {
            return Err(ParseError {
                line,
                message: format!("{} needs a block", c.name),
            });
        };
        let test = self.test(c.tests.into_iter().next().expect("one test"))?;
        Ok((test, self.block(block, false)?))
    }

    fn command(&mut self, c: RawCommand) -> Result<CommandKind, ParseError> {
        let line = c.line;
        if c.block.is_some() {
            return Err(ParseError {
                line,
                message: format!("{} takes no block", c.name),
            });
        }
        if let Some(t) = c.tests.first() {
            return Err(ParseError {
                line: t.line,
                message: format!(
                    "{} takes no test; is a ; missing before \"{}\"?",
                    c.name, t.name
                ),
            });
        }
        let mut a = Tagged::new(&c.name, line, c.args)?;
        let kind = match c.name.as_str() {
            "stop" => CommandKind::Stop,
            "discard" => CommandKind::Discard,
            "keep" => CommandKind::Keep {
                flags: self.flags_tag(&mut a)?,
            },
            "fileinto" => {
                self.need("fileinto", "fileinto", line)?;
                let copy = self.copy_tag(&mut a)?;
                let create = a.flag("create");
                if create {
                    self.need("mailbox", ":create", line)?;
                }
                let flags = self.flags_tag(&mut a)?;
                let mailbox = self.string(a.positional("a mailbox")?, "the mailbox")?;
                if mailbox.is_empty() {
                    return Err(a.error("fileinto needs a mailbox name"));
                }
                CommandKind::FileInto {
                    mailbox,
                    copy,
                    create,
                    flags,
                }
            }
            "redirect" => {
                let copy = self.copy_tag(&mut a)?;
                let address = self.string(a.positional("an address")?, "the address")?;
                if !variables::has_references(&address) && !plausible_address(&address) {
                    return Err(a.error(format!("redirect to an invalid address {address:?}")));
                }
                CommandKind::Redirect { address, copy }
            }
            "reject" | "ereject" => {
                self.need(&c.name, &c.name, line)?;
                let reason = self.string(a.positional("a reason")?, "the reason")?;
                CommandKind::Reject {
                    reason,
                    extended: c.name == "ereject",
                }
            }
            "vacation" => CommandKind::Vacation(Box::new(self.vacation(&mut a)?)),
            "setflag" | "addflag" | "removeflag" => {
                self.need("imap4flags", &c.name, line)?;
                let first = a.positional("a list of flags")?;
                let (variable, flags) = match a.positional.pop_front() {
                    Some(second) => {
                        self.need("variables", "a flag variable", line)?;
                        let name = self.string(first, "the variable name")?;
                        if !variables::valid_name(&name) {
                            return Err(a.error(format!("invalid variable name {name:?}")));
                        }
                        (
                            Some(name.to_ascii_lowercase()),
                            self.strings(second, "the flags")?,
                        )
                    }
                    None => (None, self.strings(first, "the flags")?),
                };
                let op = match c.name.as_str() {
                    "setflag" => FlagOp::Set,
                    "addflag" => FlagOp::Add,
                    _ => FlagOp::Remove,
                };
                CommandKind::Flags {
                    op,
                    variable,
                    flags,
                }
            }
            "set" => {
                self.need("variables", "set", line)?;
                let mut modifiers = Vec::new();
                for (tag, _, at) in std::mem::take(&mut a.tags) {
                    match variables::Modifier::from_tag(&tag) {
                        Some(m) => {
                            if m == variables::Modifier::EncodeUrl {
                                return Err(ParseError {
                                    line: at,
                                    message: ":encodeurl needs require \"enotify\", which is not supported".into(),
                                });
                            }
                            if m == variables::Modifier::QuoteRegex {
                                self.need("regex", ":quoteregex", at)?;
                            }
                            modifiers.push(m);
                        }
                        None => {
                            return Err(ParseError {
                                line: at,
                                message: format!("set does not take :{tag}"),
                            });
                        }
                    }
                }
                if variables::conflicting(&modifiers) {
                    return Err(a.error("two modifiers of the same precedence"));
                }
                let name = self.string(a.positional("a variable name")?, "the variable name")?;
                if !variables::valid_name(&name) {
                    return Err(a.error(format!("invalid variable name {name:?}")));
                }
                let value = self.string(a.positional("a value")?, "the value")?;
                CommandKind::Set {
                    name: name.to_ascii_lowercase(),
                    value,
                    modifiers,
                }
            }
            "include" => {
                self.need("include", "include", line)?;
                let global = a.one_of(&["personal", "global"])?.as_deref() == Some("global");
                let once = a.flag("once");
                let optional = a.flag("optional");
                let name = self.string(a.positional("a script name")?, "the script name")?;
                if !stratus_core::sieve::valid_name(&name) {
                    return Err(a.error(format!("invalid script name {name:?}")));
                }
                CommandKind::Include {
                    global,
                    name,
                    once,
                    optional,
                }
            }
            "return" => {
                self.need("include", "return", line)?;
                CommandKind::Return
            }
            "global" => {
                self.need("include", "global", line)?;
                self.need("variables", "global", line)?;
                let names = self.strings(a.positional("variable names")?, "the names")?;
                if let Some(bad) = names.iter().find(|n| !variables::valid_name(n)) {
                    return Err(a.error(format!("invalid variable name {bad:?}")));
                }
                CommandKind::Global {
                    names: names.iter().map(|n| n.to_ascii_lowercase()).collect(),
                }
            }
            other => {
                return Err(ParseError {
                    line,
                    message: format!("unknown command \"{other}\""),
                });
            }
        };
        a.finish()?;
        Ok(kind)
    }

    fn copy_tag(&self, a: &mut Tagged) -> Result<bool, ParseError> {
        let copy = a.flag("copy");
        if copy {
            self.need("copy", ":copy", a.line)?;
        }
        Ok(copy)
    }

    fn flags_tag(&self, a: &mut Tagged) -> Result<Option<Vec<String>>, ParseError> {
        match a.value("flags") {
            Some((v, at)) => {
                self.need("imap4flags", ":flags", at)?;
                Ok(Some(self.strings(v, ":flags")?))
            }
            None => Ok(None),
        }
    }

    fn vacation(&self, a: &mut Tagged) -> Result<Vacation, ParseError> {
        self.need("vacation", "vacation", a.line)?;
        let days = a.value("days");
        let seconds = a.value("seconds");
        let period = match (days, seconds) {
            (Some(_), Some(_)) => {
                return Err(a.error(":days and :seconds cannot be used together"));
            }
            (Some((d, _)), None) => Some(self.number(d, ":days")?.saturating_mul(86_400)),
            (None, Some((s, at))) => {
                self.need("vacation-seconds", ":seconds", at)?;
                Some(self.number(s, ":seconds")?)
            }
            (None, None) => None,
        };
        let subject = a
            .value("subject")
            .map(|(v, _)| self.string(v, ":subject"))
            .transpose()?;
        let from = a
            .value("from")
            .map(|(v, _)| self.string(v, ":from"))
            .transpose()?;
        if let Some(f) = &from
            && !variables::has_references(f)
            && !plausible_address(strip_display_name(f))
        {
            return Err(a.error(format!(":from is not an address: {f:?}")));
        }
        let addresses = a
            .value("addresses")
            .map(|(v, _)| self.strings(v, ":addresses"))
            .transpose()?
            .unwrap_or_default();
        let mime = a.flag("mime");
        let handle = a
            .value("handle")
            .map(|(v, _)| self.string(v, ":handle"))
            .transpose()?;
        let reason = self.string(a.positional("a reason")?, "the reason")?;
        Ok(Vacation {
            period,
            subject,
            from,
            addresses,
            mime,
            handle,
            reason,
        })
    }

    /// The match type and comparator tags of a test.
    fn matching(&self, a: &mut Tagged) -> Result<Match, ParseError> {
        let mut kind =
            a.one_of(&["is", "contains", "matches", "regex"])?
                .map(|k| match k.as_str() {
                    "is" => MatchType::Is,
                    "contains" => MatchType::Contains,
                    "matches" => MatchType::Matches,
                    _ => MatchType::Regex,
                });
        if kind == Some(MatchType::Regex) {
            self.need("regex", ":regex", a.line)?;
        }
        for tag in ["value", "count"] {
            if let Some((v, at)) = a.value(tag) {
                self.need("relational", &format!(":{tag}"), at)?;
                if kind.is_some() {
                    return Err(a.error("more than one match type"));
                }
                let rel = self.string(v, &format!(":{tag}"))?;
                let rel = Relation::from_name(&rel).ok_or_else(|| ParseError {
                    line: at,
                    message: format!("unknown relation {rel:?}"),
                })?;
                kind = Some(if tag == "value" {
                    MatchType::Value(rel)
                } else {
                    MatchType::Count(rel)
                });
            }
        }
        let comparator = match a.value("comparator") {
            Some((v, at)) => {
                let name = self.string(v, ":comparator")?.to_ascii_lowercase();
                let c = Comparator::from_name(&name).ok_or_else(|| ParseError {
                    line: at,
                    message: format!("unknown comparator {name:?}"),
                })?;
                if c == Comparator::AsciiNumeric {
                    self.need("comparator-i;ascii-numeric", "i;ascii-numeric", at)?;
                }
                c
            }
            None => Comparator::AsciiCasemap,
        };
        let kind = kind.unwrap_or(MatchType::Is);
        matching::supported(comparator, &kind).map_err(|e| a.error(e.to_string()))?;
        Ok(Match { kind, comparator })
    }

    /// Keys, with constant regular expressions checked now.
    fn keys(&self, a: &mut Tagged, m: &Match) -> Result<Vec<String>, ParseError> {
        let keys = self.strings(a.positional("a key list")?, "the keys")?;
        if m.kind == MatchType::Regex {
            for k in keys.iter().filter(|k| !variables::has_references(k)) {
                matching::check_regex(k).map_err(|e| a.error(e.to_string()))?;
            }
        }
        Ok(keys)
    }

    fn address_part(&self, a: &mut Tagged) -> Result<AddressPart, ParseError> {
        Ok(
            match a
                .one_of(&["all", "localpart", "domain", "user", "detail"])?
                .as_deref()
            {
                Some("localpart") => AddressPart::LocalPart,
                Some("domain") => AddressPart::Domain,
                Some("user") => {
                    self.need("subaddress", ":user", a.line)?;
                    AddressPart::User
                }
                Some("detail") => {
                    self.need("subaddress", ":detail", a.line)?;
                    AddressPart::Detail
                }
                _ => AddressPart::All,
            },
        )
    }

    fn index(&self, a: &mut Tagged) -> Result<Option<Index>, ParseError> {
        let last = a.flag("last");
        match a.value("index") {
            Some((v, at)) => {
                self.need("index", ":index", at)?;
                let n = self.number(v, ":index")?;
                if n == 0 {
                    return Err(a.error(":index counts from 1"));
                }
                Ok(Some(Index { n, last }))
            }
            None if last => Err(a.error(":last needs :index")),
            None => Ok(None),
        }
    }

    fn zone(&self, a: &mut Tagged, original_allowed: bool) -> Result<Zone, ParseError> {
        let original = original_allowed && a.flag("originalzone");
        match a.value("zone") {
            Some(_) if original => Err(a.error(":zone and :originalzone cannot be used together")),
            Some((v, at)) => {
                let z = self.string(v, ":zone")?;
                if !variables::has_references(&z) && date::parse_zone(&z).is_none() {
                    return Err(ParseError {
                        line: at,
                        message: format!("invalid zone {z:?} (expected +hhmm or -hhmm)"),
                    });
                }
                Ok(Zone::Fixed(z))
            }
            None if original => Ok(Zone::Original),
            None => Ok(Zone::Local),
        }
    }

    fn date_part(&self, a: &mut Tagged) -> Result<String, ParseError> {
        let part = self.string(a.positional("a date part")?, "the date part")?;
        if !variables::has_references(&part) && !date::is_part(&part) {
            return Err(a.error(format!("unknown date part {part:?}")));
        }
        Ok(part.to_ascii_lowercase())
    }

    fn header_names(&self, a: &mut Tagged) -> Result<Vec<String>, ParseError> {
        let names = self.strings(a.positional("header names")?, "the header names")?;
        if let Some(bad) = names
            .iter()
            .find(|n| !variables::has_references(n) && !valid_field_name(n))
        {
            return Err(a.error(format!("invalid header name {bad:?}")));
        }
        Ok(names)
    }

    fn test(&mut self, t: RawTest) -> Result<Test, ParseError> {
        let line = t.line;
        let takes_tests = matches!(t.name.as_str(), "not" | "allof" | "anyof");
        if !takes_tests && !t.tests.is_empty() {
            return Err(ParseError {
                line,
                message: format!("{} takes no tests", t.name),
            });
        }
        if takes_tests {
            if !t.args.is_empty() {
                return Err(ParseError {
                    line,
                    message: format!("{} takes only tests", t.name),
                });
            }
            let mut tests = t
                .tests
                .into_iter()
                .map(|t| self.test(t))
                .collect::<Result<Vec<_>, _>>()?;
            return match t.name.as_str() {
                "not" if tests.len() == 1 => Ok(Test::Not(Box::new(tests.remove(0)))),
                "not" => Err(ParseError {
                    line,
                    message: "not takes one test".into(),
                }),
                _ if tests.is_empty() => Err(ParseError {
                    line,
                    message: format!("{} needs a list of tests", t.name),
                }),
                "allof" => Ok(Test::AllOf(tests)),
                _ => Ok(Test::AnyOf(tests)),
            };
        }
        let mut a = Tagged::new(&t.name, line, t.args)?;
        let test = match t.name.as_str() {
            "true" => Test::True,
            "false" => Test::False,
            "address" => {
                let m = self.matching(&mut a)?;
                let part = self.address_part(&mut a)?;
                let index = self.index(&mut a)?;
                let headers = self.header_names(&mut a)?;
                Test::Address {
                    keys: self.keys(&mut a, &m)?,
                    m,
                    part,
                    index,
                    headers,
                }
            }
            "envelope" => {
                self.need("envelope", "envelope", line)?;
                let m = self.matching(&mut a)?;
                let part = self.address_part(&mut a)?;
                let parts = self.strings(a.positional("envelope parts")?, "the envelope parts")?;
                if let Some(bad) = parts.iter().find(|p| {
                    !variables::has_references(p)
                        && !p.eq_ignore_ascii_case("from")
                        && !p.eq_ignore_ascii_case("to")
                }) {
                    return Err(a.error(format!("unknown envelope part {bad:?}")));
                }
                Test::Envelope {
                    keys: self.keys(&mut a, &m)?,
                    m,
                    part,
                    parts,
                }
            }
            "header" => {
                let m = self.matching(&mut a)?;
                let index = self.index(&mut a)?;
                let headers = self.header_names(&mut a)?;
                Test::Header {
                    keys: self.keys(&mut a, &m)?,
                    m,
                    index,
                    headers,
                }
            }
            "exists" => Test::Exists(self.header_names(&mut a)?),
            "size" => {
                let over = match a.one_of(&["over", "under"])?.as_deref() {
                    Some("over") => true,
                    Some(_) => false,
                    None => return Err(a.error("size needs :over or :under")),
                };
                let limit = self.number(a.positional("a size")?, "the size")?;
                Test::Size { over, limit }
            }
            "body" => {
                self.need("body", "body", line)?;
                let m = self.matching(&mut a)?;
                let content = a.value("content");
                let transform = match (a.one_of(&["raw", "text"])?.as_deref(), content) {
                    (Some(_), Some(_)) => {
                        return Err(a.error("only one of :raw, :content and :text"));
                    }
                    (Some("raw"), None) => BodyTransform::Raw,
                    (_, Some((v, _))) => BodyTransform::Content(self.strings(v, ":content")?),
                    _ => BodyTransform::Text,
                };
                Test::Body {
                    keys: self.keys(&mut a, &m)?,
                    m,
                    transform,
                }
            }
            "date" => {
                self.need("date", "date", line)?;
                let zone = self.zone(&mut a, true)?;
                let m = self.matching(&mut a)?;
                let index = self.index(&mut a)?;
                let header = self.string(a.positional("a header name")?, "the header name")?;
                let part = self.date_part(&mut a)?;
                Test::Date {
                    keys: self.keys(&mut a, &m)?,
                    m,
                    zone,
                    index,
                    header,
                    part,
                }
            }
            "currentdate" => {
                self.need("date", "currentdate", line)?;
                let zone = self.zone(&mut a, false)?;
                let m = self.matching(&mut a)?;
                let part = self.date_part(&mut a)?;
                Test::CurrentDate {
                    keys: self.keys(&mut a, &m)?,
                    m,
                    zone,
                    part,
                }
            }
            "string" => {
                self.need("variables", "string", line)?;
                let m = self.matching(&mut a)?;
                let sources = self.strings(a.positional("source strings")?, "the sources")?;
                Test::String {
                    keys: self.keys(&mut a, &m)?,
                    m,
                    sources,
                }
            }
            "hasflag" => {
                self.need("imap4flags", "hasflag", line)?;
                let m = self.matching(&mut a)?;
                let first = self.strings(a.positional("flags")?, "the flags")?;
                let (variables, flags) = match a.positional.pop_front() {
                    Some(second) => {
                        self.need("variables", "a flag variable", line)?;
                        (
                            first.iter().map(|n| n.to_ascii_lowercase()).collect(),
                            self.strings(second, "the flags")?,
                        )
                    }
                    None => (Vec::new(), first),
                };
                Test::HasFlag {
                    m,
                    variables,
                    flags,
                }
            }
            "mailboxexists" => {
                self.need("mailbox", "mailboxexists", line)?;
                Test::MailboxExists(self.strings(a.positional("mailbox names")?, "the mailboxes")?)
            }
            other => {
                return Err(ParseError {
                    line,
                    message: format!("unknown test \"{other}\""),
                });
            }
        };
        a.finish()?;
        Ok(test)
    }
}

/// A header field name (RFC 5322: printable ASCII but colon).
fn valid_field_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| (33..=126).contains(&b) && b != b':')
}

/// An address we could send to (the project's own address syntax).
pub(crate) fn plausible_address(a: &str) -> bool {
    stratus_core::Address::parse(a).is_ok()
}

/// `"Name" <a@b>` or `Name <a@b>` → `a@b`; anything else unchanged.
pub fn strip_display_name(s: &str) -> &str {
    match (s.rfind('<'), s.rfind('>')) {
        (Some(open), Some(close)) if open < close => &s[open + 1..close],
        _ => s.trim(),
    }
}
