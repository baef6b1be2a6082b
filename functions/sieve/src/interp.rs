//! Runs a checked [`Script`] against one message for one recipient and
//! returns what to do with it ([`Outcome`]). No I/O: the message is given
//! as bytes, and the few things the interpreter asks of the world (does a
//! mailbox exist, the text of an included script) go through [`Host`].
//!
//! Every run is bounded: each command, test and comparison spends one
//! step of [`Limits::max_steps`], and includes, redirects, actions and
//! variables have their own caps. A script that goes over any of them, or
//! fails at run time, ends with the implicit keep and the reason in
//! [`Outcome::error`] (RFC 5228 section 2.10.6): the message is never lost.

use std::collections::HashMap;

use mail_parser::parsers::MessageStream;
use mail_parser::{Address, HeaderValue, Message, MimeHeaders, PartType};

use crate::ast::*;
use crate::matching::{self, MatchType, Regexes};
use crate::variables::{self, VarRef};
use crate::{Limits, date, parser};

/// What the interpreter asks of the world.
pub trait Host {
    /// Whether the recipient has a mailbox of this name.
    fn mailbox_exists(&self, name: &str) -> bool;
    /// The text of the recipient's (`global`: the administrator's) script
    /// named `name`, if there is one.
    fn script(&self, global: bool, name: &str) -> Option<String>;
}

/// One message for one recipient.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    /// The message as it will be delivered.
    pub raw: &'a [u8],
    /// The envelope sender; empty for the null sender.
    pub envelope_from: &'a str,
    /// The envelope recipient, as given at RCPT (with its +detail).
    pub envelope_to: &'a str,
    /// Now, in seconds since the Unix epoch (for `currentdate`).
    pub now: i64,
}

/// What to do with the message.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// File into INBOX.
    Keep {
        flags: Vec<String>,
    },
    FileInto {
        mailbox: String,
        flags: Vec<String>,
        create: bool,
    },
    Redirect {
        address: String,
    },
    Reject {
        reason: String,
        extended: bool,
    },
    Vacation(VacationAction),
}

/// A vacation reply the script asks for; whether it is sent (RFC 3834
/// and 5230 rules, once per sender per period) is the caller's to decide.
#[derive(Debug, Clone, PartialEq)]
pub struct VacationAction {
    pub period: Option<u64>,
    pub subject: Option<String>,
    pub from: Option<String>,
    pub addresses: Vec<String>,
    pub mime: bool,
    /// The handle: the script's, or one made of the reply's text so that
    /// a changed reply is sent again.
    pub handle: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Outcome {
    pub actions: Vec<Action>,
    /// Why the script stopped early, if it failed; the actions then are
    /// the implicit keep alone.
    pub error: Option<String>,
}

/// Runs `script` on `input`.
pub fn run(script: &Script, input: &Input<'_>, host: &dyn Host, limits: &Limits) -> Outcome {
    // stratus-core's parse: mail-parser's debug assertion on some broken
    // multiparts becomes an unparsed message, not a panic.
    let parsed = stratus_core::message::parse(input.raw);
    let mut run = Run {
        input,
        message: parsed.as_ref(),
        host,
        limits,
        steps: 0,
        variables: HashMap::new(),
        globals: HashMap::new(),
        matched: Vec::new(),
        flags: Vec::new(),
        actions: Vec::new(),
        implicit_keep: true,
        regexes: Regexes::default(),
        included: Vec::new(),
        include_depth: 0,
        variables_on: script.requires("variables"),
        started: std::time::Instant::now(),
        parsed: HashMap::new(),
    };
    match run.block(&script.commands) {
        Ok(_) => {
            if let Err(e) = run.finish() {
                return failed(e);
            }
            Outcome {
                actions: run.actions,
                error: None,
            }
        }
        Err(e) => failed(e),
    }
}

fn failed(error: String) -> Outcome {
    Outcome {
        actions: vec![Action::Keep { flags: Vec::new() }],
        error: Some(error),
    }
}

/// How a block ended.
enum Flow {
    Next,
    Stop,
    Return,
}

type Result<T> = std::result::Result<T, String>;

struct Run<'a> {
    input: &'a Input<'a>,
    message: Option<&'a Message<'a>>,
    host: &'a dyn Host,
    limits: &'a Limits,
    steps: u64,
    variables: HashMap<String, String>,
    /// Variables shared with included scripts by `global`.
    globals: HashMap<String, String>,
    /// Match variables of the last successful :matches or :regex.
    matched: Vec<String>,
    /// imap4flags' internal variable, one flag per entry.
    flags: Vec<String>,
    actions: Vec<Action>,
    implicit_keep: bool,
    regexes: Regexes,
    /// Scripts included with :once, by (global, name).
    included: Vec<(bool, String)>,
    include_depth: usize,
    variables_on: bool,
    started: std::time::Instant,
    /// Included scripts, parsed once per run.
    parsed: HashMap<(bool, String), std::rc::Rc<Script>>,
}

impl<'a> Run<'a> {
    fn step(&mut self, line: u32) -> Result<()> {
        self.spend(1, line)
    }

    /// Spends `cost` steps, and checks the clock now and then: a step
    /// budget bounds the work, the deadline the time it takes.
    fn spend(&mut self, cost: u64, line: u32) -> Result<()> {
        let before = self.steps;
        self.steps = self.steps.saturating_add(cost);
        if self.steps > self.limits.max_steps {
            return Err(format!(
                "line {line}: the script ran more than {} steps",
                self.limits.max_steps
            ));
        }
        if before / 256 != self.steps / 256 && self.started.elapsed() > self.limits.max_time {
            return Err(format!(
                "line {line}: the script ran longer than {:?}",
                self.limits.max_time
            ));
        }
        Ok(())
    }

    fn block(&mut self, commands: &[Command]) -> Result<Flow> {
        for c in commands {
            self.step(c.line)?;
            match self.command(c)? {
                Flow::Next => {}
                other => return Ok(other),
            }
        }
        Ok(Flow::Next)
    }

    /// A string with its variables expanded (when the script uses them).
    fn expand(&self, s: &str) -> String {
        if !self.variables_on || !variables::has_references(s) {
            return s.to_string();
        }
        variables::expand(s, self.limits.max_variable_size, &mut |r| match r {
            VarRef::Name(name) => self.variables.get(name).cloned(),
            VarRef::Match(i) => self.matched.get(i).cloned(),
        })
    }

    fn expand_all(&self, list: &[String]) -> Vec<String> {
        list.iter().map(|s| self.expand(s)).collect()
    }

    fn push(&mut self, action: Action, line: u32) -> Result<()> {
        if self.actions.len() >= self.limits.max_actions {
            return Err(format!(
                "line {line}: more than {} actions",
                self.limits.max_actions
            ));
        }
        self.actions.push(action);
        Ok(())
    }

    fn command(&mut self, c: &Command) -> Result<Flow> {
        let line = c.line;
        match &c.kind {
            CommandKind::If {
                branches,
                otherwise,
            } => {
                for (test, block) in branches {
                    if self.test(test, line)? {
                        return self.block(block);
                    }
                }
                if let Some(block) = otherwise {
                    return self.block(block);
                }
            }
            CommandKind::Stop => return Ok(Flow::Stop),
            CommandKind::Return => return Ok(Flow::Return),
            CommandKind::Keep { flags } => {
                let flags = self.flags_for(flags.as_deref());
                self.file(None, flags, false, line)?;
                self.implicit_keep = false;
            }
            CommandKind::Discard => self.implicit_keep = false,
            CommandKind::FileInto {
                mailbox,
                copy,
                create,
                flags,
            } => {
                let mailbox = self.expand(mailbox);
                if mailbox.is_empty() {
                    return Err(format!("line {line}: fileinto an empty mailbox name"));
                }
                let flags = self.flags_for(flags.as_deref());
                self.file(Some(mailbox), flags, *create, line)?;
                if !copy {
                    self.implicit_keep = false;
                }
            }
            CommandKind::Redirect { address, copy } => {
                let address = self.expand(address);
                if !parser::plausible_address(&address) {
                    return Err(format!(
                        "line {line}: redirect to an invalid address {address:?}"
                    ));
                }
                let redirects = self
                    .actions
                    .iter()
                    .filter(|a| matches!(a, Action::Redirect { .. }))
                    .count();
                let duplicate = self.actions.iter().any(
                    |a| matches!(a, Action::Redirect { address: x } if x.eq_ignore_ascii_case(&address)),
                );
                if !duplicate {
                    if redirects >= self.limits.max_redirects {
                        return Err(format!(
                            "line {line}: more than {} redirects",
                            self.limits.max_redirects
                        ));
                    }
                    self.push(Action::Redirect { address }, line)?;
                }
                if !copy {
                    self.implicit_keep = false;
                }
            }
            CommandKind::Reject { reason, extended } => {
                if self
                    .actions
                    .iter()
                    .any(|a| matches!(a, Action::Reject { .. }))
                {
                    return Err(format!("line {line}: reject twice"));
                }
                let reason = self.expand(reason);
                self.push(
                    Action::Reject {
                        reason,
                        extended: *extended,
                    },
                    line,
                )?;
                self.implicit_keep = false;
            }
            CommandKind::Vacation(v) => {
                if self
                    .actions
                    .iter()
                    .any(|a| matches!(a, Action::Vacation(_)))
                {
                    return Err(format!("line {line}: vacation twice"));
                }
                let reason = self.expand(&v.reason);
                if reason.len() > self.limits.max_vacation_size {
                    return Err(format!(
                        "line {line}: a vacation reason of more than {} bytes",
                        self.limits.max_vacation_size
                    ));
                }
                let subject = v.subject.as_deref().map(|s| self.expand(s));
                let from = v.from.as_deref().map(|s| self.expand(s));
                let handle = match &v.handle {
                    Some(h) => self.expand(h),
                    None => default_handle(&reason, subject.as_deref(), from.as_deref()),
                };
                let action = VacationAction {
                    period: v.period,
                    subject,
                    from,
                    addresses: self.expand_all(&v.addresses),
                    mime: v.mime,
                    handle,
                    reason,
                };
                self.push(Action::Vacation(action), line)?;
            }
            CommandKind::Flags {
                op,
                variable,
                flags,
            } => {
                let given = split_flags(&self.expand_all(flags));
                let current = match variable {
                    Some(v) => split_flags(&[self.variables.get(v).cloned().unwrap_or_default()]),
                    None => std::mem::take(&mut self.flags),
                };
                let next = match op {
                    FlagOp::Set => dedup_flags(given),
                    FlagOp::Add => dedup_flags(current.into_iter().chain(given).collect()),
                    FlagOp::Remove => current
                        .into_iter()
                        .filter(|f| !given.iter().any(|g| g.eq_ignore_ascii_case(f)))
                        .collect(),
                };
                match variable {
                    Some(v) => self.set_variable(v, next.join(" "), line)?,
                    None => self.flags = next,
                }
            }
            CommandKind::Set {
                name,
                value,
                modifiers,
            } => {
                let value = variables::apply_modifiers(&self.expand(value), modifiers);
                self.set_variable(name, value, line)?;
            }
            CommandKind::Global { names } => {
                for n in names {
                    let v = self.globals.entry(n.clone()).or_default().clone();
                    self.variables.entry(n.clone()).or_insert(v);
                }
            }
            CommandKind::Include {
                global,
                name,
                once,
                optional,
            } => return self.include(*global, name, *once, *optional, line),
        }
        Ok(Flow::Next)
    }

    fn set_variable(&mut self, name: &str, mut value: String, line: u32) -> Result<()> {
        if value.len() > self.limits.max_variable_size {
            let mut end = self.limits.max_variable_size;
            while !value.is_char_boundary(end) {
                end -= 1;
            }
            value.truncate(end);
        }
        if !self.variables.contains_key(name) && self.variables.len() >= self.limits.max_variables {
            return Err(format!(
                "line {line}: more than {} variables",
                self.limits.max_variables
            ));
        }
        if self.globals.contains_key(name) {
            self.globals.insert(name.to_string(), value.clone());
        }
        self.variables.insert(name.to_string(), value);
        Ok(())
    }

    /// The flags a keep or fileinto sets: its :flags, or the internal
    /// variable's.
    fn flags_for(&self, flags: Option<&[String]>) -> Vec<String> {
        match flags {
            Some(list) => dedup_flags(split_flags(&self.expand_all(list))),
            None => self.flags.clone(),
        }
    }

    /// Files once into `mailbox`, or (None) keeps: a second fileinto of
    /// the same mailbox, or a second keep, adds its flags to the first.
    /// A keep and `fileinto "INBOX"` stay apart: keep is wherever the
    /// message would have gone without a script (Junk, for spam), which
    /// the caller knows; INBOX is INBOX.
    fn file(
        &mut self,
        mailbox: Option<String>,
        flags: Vec<String>,
        create: bool,
        line: u32,
    ) -> Result<()> {
        let inbox = mailbox.as_deref().map(|m| m.eq_ignore_ascii_case("INBOX"));
        for a in &mut self.actions {
            let same = match (&*a, mailbox.as_deref()) {
                (Action::Keep { .. }, None) => true,
                (Action::FileInto { mailbox: m, .. }, Some(name)) => {
                    m == name || (inbox == Some(true) && m.eq_ignore_ascii_case("INBOX"))
                }
                _ => false,
            };
            if same {
                if let Action::Keep { flags: f } | Action::FileInto { flags: f, .. } = a {
                    *f = dedup_flags(f.drain(..).chain(flags).collect());
                }
                return Ok(());
            }
        }
        let action = match mailbox {
            None => Action::Keep { flags },
            Some(mailbox) => Action::FileInto {
                mailbox,
                flags,
                create,
            },
        };
        self.push(action, line)
    }

    fn include(
        &mut self,
        global: bool,
        name: &str,
        once: bool,
        optional: bool,
        line: u32,
    ) -> Result<Flow> {
        let key = (global, name.to_string());
        if once && self.included.contains(&key) {
            return Ok(Flow::Next);
        }
        if self.include_depth >= self.limits.max_include_depth {
            return Err(format!(
                "line {line}: includes nested more than {} deep",
                self.limits.max_include_depth
            ));
        }
        let script = match self.parsed.get(&key) {
            Some(s) => s.clone(),
            None => {
                let Some(text) = self.host.script(global, name) else {
                    if optional {
                        return Ok(Flow::Next);
                    }
                    return Err(format!("line {line}: no script named {name:?} to include"));
                };
                // Parsing costs in proportion to the text.
                self.spend(1 + text.len() as u64 / 256, line)?;
                let script = parser::parse(&text, self.limits)
                    .map_err(|e| format!("line {line}: included script {name:?}: {e}"))?;
                let script = std::rc::Rc::new(script);
                self.parsed.insert(key.clone(), script.clone());
                script
            }
        };
        self.step(line)?;
        self.included.push(key);
        // The included script has variables of its own; only those both
        // declare `global` are shared.
        let outer_vars = std::mem::take(&mut self.variables);
        let outer_on = self.variables_on;
        for (k, v) in &outer_vars {
            if self.globals.contains_key(k) {
                self.globals.insert(k.clone(), v.clone());
            }
        }
        self.variables_on = script.requires("variables");
        self.include_depth += 1;
        let flow = self.block(&script.commands);
        self.include_depth -= 1;
        self.variables_on = outer_on;
        let inner = std::mem::replace(&mut self.variables, outer_vars);
        for (k, v) in inner {
            if self.globals.contains_key(&k) {
                self.globals.insert(k.clone(), v.clone());
                self.variables.insert(k, v);
            }
        }
        match flow? {
            Flow::Stop => Ok(Flow::Stop),
            Flow::Next | Flow::Return => Ok(Flow::Next),
        }
    }

    /// The implicit keep, and the combinations RFC 5429 forbids.
    fn finish(&mut self) -> Result<()> {
        let rejected = self
            .actions
            .iter()
            .any(|a| matches!(a, Action::Reject { .. }));
        if rejected
            && self.actions.iter().any(|a| {
                matches!(
                    a,
                    Action::Keep { .. }
                        | Action::FileInto { .. }
                        | Action::Redirect { .. }
                        | Action::Vacation(_)
                )
            })
        {
            return Err(
                "reject cannot be combined with keep, fileinto, redirect or vacation".into(),
            );
        }
        if self.implicit_keep {
            let flags = self.flags.clone();
            self.file(None, flags, false, 0)?;
        }
        Ok(())
    }

    // -----------------------------------------------------------------
    // Tests.

    fn test(&mut self, test: &Test, line: u32) -> Result<bool> {
        self.step(line)?;
        Ok(match test {
            Test::True => true,
            Test::False => false,
            Test::Not(t) => !self.test(t, line)?,
            Test::AllOf(tests) => {
                for t in tests {
                    if !self.test(t, line)? {
                        return Ok(false);
                    }
                }
                true
            }
            Test::AnyOf(tests) => {
                for t in tests {
                    if self.test(t, line)? {
                        return Ok(true);
                    }
                }
                false
            }
            Test::Header {
                m,
                index,
                headers,
                keys,
            } => {
                let mut values = Vec::new();
                for name in self.expand_all(headers) {
                    values.extend(pick(self.fields(&name), *index).into_iter().map(field_text));
                }
                self.compare(m, &values, keys, line)?
            }
            Test::Address {
                m,
                part,
                index,
                headers,
                keys,
            } => {
                let mut values = Vec::new();
                for name in self.expand_all(headers) {
                    for field in pick(self.fields(&name), *index) {
                        values.extend(
                            field_addresses(field)
                                .iter()
                                .filter_map(|a| address_part(a, *part)),
                        );
                    }
                }
                self.compare(m, &values, keys, line)?
            }
            Test::Envelope {
                m,
                part,
                parts,
                keys,
            } => {
                let mut values = Vec::new();
                for p in self.expand_all(parts) {
                    let address = if p.eq_ignore_ascii_case("from") {
                        self.input.envelope_from
                    } else if p.eq_ignore_ascii_case("to") {
                        self.input.envelope_to
                    } else {
                        return Err(format!("line {line}: unknown envelope part {p:?}"));
                    };
                    // The null sender's parts are all empty.
                    if address.is_empty() {
                        if *part == AddressPart::All {
                            values.push(String::new());
                        }
                    } else if let Some(v) = address_part(address, *part) {
                        values.push(v);
                    }
                }
                self.compare(m, &values, keys, line)?
            }
            Test::Exists(names) => {
                let names = self.expand_all(names);
                names.iter().all(|n| !self.fields(n).is_empty())
            }
            Test::Size { over, limit } => {
                let size = self.input.raw.len() as u64;
                if *over { size > *limit } else { size < *limit }
            }
            Test::Body { m, transform, keys } => {
                let texts = self.body(transform);
                self.compare(m, &texts, keys, line)?
            }
            Test::Date {
                m,
                zone,
                index,
                header,
                part,
                keys,
            } => {
                let header = self.expand(header);
                let part = self.expand(part);
                let mut values = Vec::new();
                let received = header.eq_ignore_ascii_case("received");
                for value in pick(self.fields(&header), *index)
                    .into_iter()
                    .map(field_text)
                {
                    // A Received field's date follows its last semicolon.
                    let value = match value.rsplit_once(';') {
                        Some((_, d)) if received => d,
                        _ => value.as_str(),
                    };
                    let Some(dt) = date::parse_rfc5322(value) else {
                        continue;
                    };
                    if let Some(v) = self.date_part(dt, zone, &part, line)? {
                        values.push(v);
                    }
                }
                self.compare(m, &values, keys, line)?
            }
            Test::CurrentDate {
                m,
                zone,
                part,
                keys,
            } => {
                let part = self.expand(part);
                let now = date::DateTime {
                    timestamp: self.input.now,
                    offset_minutes: 0,
                };
                let values: Vec<String> = self
                    .date_part(now, zone, &part, line)?
                    .into_iter()
                    .collect();
                self.compare(m, &values, keys, line)?
            }
            Test::String { m, sources, keys } => {
                let mut values = self.expand_all(sources);
                if matches!(m.kind, MatchType::Count(_)) {
                    values.retain(|v| !v.is_empty());
                }
                self.compare(m, &values, keys, line)?
            }
            Test::HasFlag {
                m,
                variables,
                flags,
            } => {
                let have = if variables.is_empty() {
                    self.flags.clone()
                } else {
                    let joined: Vec<String> = variables
                        .iter()
                        .map(|v| {
                            self.variables
                                .get(&v.to_ascii_lowercase())
                                .cloned()
                                .unwrap_or_default()
                        })
                        .collect();
                    split_flags(&joined)
                };
                self.compare(m, &have, flags, line)?
            }
            Test::MailboxExists(names) => {
                let names = self.expand_all(names);
                names.iter().all(|n| self.host.mailbox_exists(n))
            }
        })
    }

    fn date_part(
        &self,
        dt: date::DateTime,
        zone: &Zone,
        part: &str,
        line: u32,
    ) -> Result<Option<String>> {
        let shown = match zone {
            Zone::Original => dt,
            Zone::Local => date::in_zone(dt, 0),
            Zone::Fixed(z) => {
                let z = self.expand(z);
                let Some(offset) = date::parse_zone(&z) else {
                    return Err(format!("line {line}: invalid zone {z:?}"));
                };
                date::in_zone(dt, offset)
            }
        };
        match date::part(shown, part) {
            Some(v) => Ok(Some(v)),
            None if date::is_part(part) => Ok(None),
            None => Err(format!("line {line}: unknown date part {part:?}")),
        }
    }

    /// Compares `values` with `keys`; a successful :matches or :regex sets
    /// the match variables.
    fn compare(
        &mut self,
        m: &Match,
        values: &[String],
        keys: &[String],
        line: u32,
    ) -> Result<bool> {
        let keys = self.expand_all(keys);
        if let MatchType::Count(rel) = m.kind {
            return Ok(keys
                .iter()
                .any(|k| matching::test_count(rel, m.comparator, values.len(), k)));
        }
        let capture = self.variables_on && matches!(m.kind, MatchType::Matches | MatchType::Regex);
        for value in values {
            for key in &keys {
                // A comparison costs in proportion to what it reads: the
                // value, and for wildcards and patterns the value times
                // the key.
                let size = value.len() as u64;
                let cost = match m.kind {
                    MatchType::Matches | MatchType::Regex => {
                        size.saturating_mul(key.len() as u64 + 1) / 4096
                    }
                    _ => size / 1024,
                };
                self.spend(1 + cost, line)?;
                let mut captures = Vec::new();
                let hit = matching::test(
                    &m.kind,
                    m.comparator,
                    value,
                    key,
                    &mut self.regexes,
                    capture.then_some(&mut captures),
                )
                .map_err(|e| format!("line {line}: {e}"))?;
                if hit {
                    if capture {
                        self.matched = captures;
                    }
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    /// The raw values of every `name` header field, in order.
    fn fields(&self, name: &str) -> Vec<&'a str> {
        let Some(message) = self.message else {
            return Vec::new();
        };
        message
            .headers_raw()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .take(self.limits.max_list)
            .map(|(_, raw)| raw)
            .collect()
    }

    fn body(&self, transform: &BodyTransform) -> Vec<String> {
        let Some(message) = self.message else {
            return vec![String::from_utf8_lossy(self.input.raw).into_owned()];
        };
        match transform {
            BodyTransform::Raw => {
                let start = message.root_part().offset_body as usize;
                let raw = self.input.raw.get(start..).unwrap_or_default();
                vec![String::from_utf8_lossy(raw).into_owned()]
            }
            BodyTransform::Text => {
                let mut out = Vec::new();
                for part in message.parts.iter().take(self.limits.max_list) {
                    match &part.body {
                        PartType::Text(t) => out.push(t.to_string()),
                        PartType::Html(h) => out.push(mail_parser::decoders::html::html_to_text(h)),
                        _ => {}
                    }
                }
                out
            }
            BodyTransform::Content(types) => {
                let types = self.expand_all(types);
                let mut out = Vec::new();
                for part in message.parts.iter().take(self.limits.max_list) {
                    if matches!(part.body, PartType::Multipart(_)) {
                        continue;
                    }
                    let (t, sub) = match part.content_type() {
                        Some(ct) => (
                            ct.ctype().to_ascii_lowercase(),
                            ct.subtype().unwrap_or_default().to_ascii_lowercase(),
                        ),
                        None => ("text".to_string(), "plain".to_string()),
                    };
                    let wanted = types.iter().any(|w| {
                        let w = w.to_ascii_lowercase();
                        w.is_empty()
                            || w == t
                            || w.split_once('/').is_some_and(|(a, b)| a == t && b == sub)
                    });
                    if wanted {
                        out.push(String::from_utf8_lossy(part.contents()).into_owned());
                    }
                }
                out
            }
        }
    }
}

/// The values `index` picks (1-based, from the end with :last), or all.
fn pick<T>(values: Vec<T>, index: Option<Index>) -> Vec<T> {
    let Some(Index { n, last }) = index else {
        return values;
    };
    let n = usize::try_from(n).unwrap_or(usize::MAX);
    let at = if last {
        values.len().checked_sub(n)
    } else {
        n.checked_sub(1)
    };
    at.and_then(|i| values.into_iter().nth(i))
        .into_iter()
        .collect()
}

/// A raw field value as mail-parser's field parsers read it: ending in
/// a line break.
fn field_bytes(value: &str) -> Vec<u8> {
    let mut bytes = value.as_bytes().to_vec();
    if !bytes.ends_with(b"\n") {
        bytes.extend_from_slice(b"\r\n");
    }
    bytes
}

/// A field's value as text: unfolded, encoded words decoded.
fn field_text(value: &str) -> String {
    match MessageStream::new(&field_bytes(value)).parse_unstructured() {
        HeaderValue::Text(t) => t.into_owned(),
        HeaderValue::TextList(l) => l.join(" "),
        _ => String::new(),
    }
}

/// The addresses in a field's value (groups opened).
pub(crate) fn field_addresses(value: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let bytes = field_bytes(value);
    if let HeaderValue::Address(address) = MessageStream::new(&bytes).parse_address() {
        let mut add = |a: &mail_parser::Addr<'_>| {
            out.push(a.address.as_deref().unwrap_or_default().to_string());
        };
        match address {
            Address::List(list) => list.iter().for_each(&mut add),
            Address::Group(groups) => groups
                .iter()
                .flat_map(|g| g.addresses.iter())
                .for_each(&mut add),
        }
    }
    out
}

/// The part of `address` a test looks at (RFC 5228 2.7.4, RFC 5233);
/// `None` when the address has no such part (no `+detail`).
fn address_part(address: &str, part: AddressPart) -> Option<String> {
    let address = address.trim();
    let (local, domain) = match address.rsplit_once('@') {
        Some((l, d)) => (l, d),
        None => (address, ""),
    };
    Some(match part {
        AddressPart::All => address.to_string(),
        AddressPart::LocalPart => local.to_string(),
        AddressPart::Domain => domain.to_string(),
        AddressPart::User => local.split_once('+').map_or(local, |(u, _)| u).to_string(),
        AddressPart::Detail => local.split_once('+')?.1.to_string(),
    })
}

/// Flags from strings that may each hold several, separated by spaces.
fn split_flags(strings: &[String]) -> Vec<String> {
    strings
        .iter()
        .flat_map(|s| s.split_whitespace())
        .map(str::to_string)
        .collect()
}

/// Each flag once (flags compare case-insensitively), first spelling kept.
fn dedup_flags(flags: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for f in flags {
        if !out.iter().any(|o| o.eq_ignore_ascii_case(&f)) {
            out.push(f);
        }
    }
    out
}

/// A vacation handle made from what the reply says, so a changed reply
/// counts as a new one (RFC 5230 section 4.2).
fn default_handle(reason: &str, subject: Option<&str>, from: Option<&str>) -> String {
    use stratus_core::ids::{FNV_OFFSET, fnv1a};
    let parts = [reason, subject.unwrap_or(""), from.unwrap_or("")];
    let h = fnv1a(parts.iter().flat_map(|p| p.bytes().chain([0])), FNV_OFFSET);
    format!("{h:016x}")
}
