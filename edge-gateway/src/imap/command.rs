//! The IMAP command parser: bytes of one complete command, literals
//! inline, in; a [`Command`] or a reason a person can read out. No I/O.
//!
//! The reader ([`super::reader`]) gathers a command's lines and literals
//! (`{n}`, `{n+}`, `~{n}`) into one buffer, each literal's octets right
//! after its marker's CRLF, exactly as they came over the wire; this parser
//! walks that buffer. It covers IMAP4rev2 (RFC 9051) and IMAP4rev1
//! (RFC 3501) and the syntax of the extensions Stratus serves: UIDPLUS,
//! MOVE, LITERAL+, ENABLE, ID, NAMESPACE, UNSELECT, SPECIAL-USE and
//! CREATE-SPECIAL-USE, CONDSTORE, ESEARCH, SEARCHRES, LIST-EXTENDED,
//! LIST-STATUS, STATUS=SIZE, SASL-IR, QUOTA, BINARY and UTF8=ACCEPT.
//!
//! Mailbox names come out as the client sent them; the session decodes
//! modified UTF-7 where the client has not enabled UTF-8.

/// Deepest nesting of parentheses in a search program or fetch list.
pub const MAX_DEPTH: usize = 32;
/// Most items in one list (search keys, fetch items, flags, ...).
const MAX_ITEMS: usize = 10_000;

/// A command with its tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tagged {
    pub tag: String,
    pub command: Command,
}

/// Why a command was refused: a tag when one could be read (then the
/// answer is a tagged BAD), and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub tag: Option<String>,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Capability,
    Noop,
    Logout,
    StartTls,
    Authenticate {
        mechanism: String,
        /// SASL-IR (RFC 4959): the initial response, base64 as sent
        /// (`=` for an empty one).
        initial: Option<String>,
    },
    Login {
        user: Vec<u8>,
        password: Vec<u8>,
    },
    Enable(Vec<String>),
    Id(Vec<(String, Option<String>)>),
    Namespace,
    Select {
        mailbox: Vec<u8>,
        read_only: bool,
        condstore: bool,
        /// QRESYNC (RFC 7162 §3.2.5): what the client already knows.
        qresync: Option<Qresync>,
    },
    Create {
        mailbox: Vec<u8>,
        special_use: Vec<String>,
    },
    Delete(Vec<u8>),
    Rename {
        from: Vec<u8>,
        to: Vec<u8>,
    },
    Subscribe(Vec<u8>),
    Unsubscribe(Vec<u8>),
    List(List),
    Lsub {
        reference: Vec<u8>,
        pattern: Vec<u8>,
    },
    Status {
        mailbox: Vec<u8>,
        items: Vec<StatusItem>,
    },
    Append {
        mailbox: Vec<u8>,
        flags: Vec<String>,
        date: Option<DateTime>,
        message: Vec<u8>,
        /// Sent as `~{n}` (BINARY, RFC 3516).
        binary: bool,
    },
    Idle,
    GetQuota(Vec<u8>),
    GetQuotaRoot(Vec<u8>),
    Check,
    Close,
    Unselect,
    Expunge {
        /// UID EXPUNGE (UIDPLUS): only these UIDs.
        uids: Option<SequenceSet>,
    },
    Search(Search),
    Fetch(Fetch),
    Store(Store),
    Copy {
        uid: bool,
        set: SequenceSet,
        mailbox: Vec<u8>,
    },
    Move {
        uid: bool,
        set: SequenceSet,
        mailbox: Vec<u8>,
    },
    /// COMPRESS (RFC 4978), with its mechanism.
    Compress(String),
    /// SORT (RFC 5256): criteria with REVERSE, then a search.
    Sort {
        uid: bool,
        criteria: Vec<(bool, SortKey)>,
        charset: String,
        key: SearchKey,
    },
    Thread {
        uid: bool,
        algorithm: ThreadAlgorithm,
        charset: String,
        key: SearchKey,
    },
}

/// One sort criterion (RFC 5256 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    Arrival,
    Cc,
    Date,
    From,
    Size,
    Subject,
    To,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThreadAlgorithm {
    OrderedSubject,
    References,
}

impl Command {
    /// The command's name as a client would write it, for logs and replies.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Capability => "CAPABILITY",
            Command::Noop => "NOOP",
            Command::Logout => "LOGOUT",
            Command::StartTls => "STARTTLS",
            Command::Authenticate { .. } => "AUTHENTICATE",
            Command::Login { .. } => "LOGIN",
            Command::Enable(_) => "ENABLE",
            Command::Id(_) => "ID",
            Command::Namespace => "NAMESPACE",
            Command::Select {
                read_only: false, ..
            } => "SELECT",
            Command::Select { .. } => "EXAMINE",
            Command::Create { .. } => "CREATE",
            Command::Delete(_) => "DELETE",
            Command::Rename { .. } => "RENAME",
            Command::Subscribe(_) => "SUBSCRIBE",
            Command::Unsubscribe(_) => "UNSUBSCRIBE",
            Command::List(_) => "LIST",
            Command::Lsub { .. } => "LSUB",
            Command::Status { .. } => "STATUS",
            Command::Append { .. } => "APPEND",
            Command::Idle => "IDLE",
            Command::GetQuota(_) => "GETQUOTA",
            Command::GetQuotaRoot(_) => "GETQUOTAROOT",
            Command::Check => "CHECK",
            Command::Close => "CLOSE",
            Command::Unselect => "UNSELECT",
            Command::Expunge { uids: None } => "EXPUNGE",
            Command::Expunge { .. } => "UID EXPUNGE",
            Command::Search(s) if s.uid => "UID SEARCH",
            Command::Search(_) => "SEARCH",
            Command::Fetch(f) if f.uid => "UID FETCH",
            Command::Fetch(_) => "FETCH",
            Command::Store(s) if s.uid => "UID STORE",
            Command::Store(_) => "STORE",
            Command::Copy { uid: true, .. } => "UID COPY",
            Command::Copy { .. } => "COPY",
            Command::Move { uid: true, .. } => "UID MOVE",
            Command::Move { .. } => "MOVE",
            Command::Compress(_) => "COMPRESS",
            Command::Sort { uid: true, .. } => "UID SORT",
            Command::Sort { .. } => "SORT",
            Command::Thread { uid: true, .. } => "UID THREAD",
            Command::Thread { .. } => "THREAD",
        }
    }
}

/// The QRESYNC parameter of SELECT: the client's UIDVALIDITY and
/// MODSEQ, and optionally the UIDs it knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Qresync {
    pub uidvalidity: u32,
    pub modseq: u64,
    pub known_uids: Option<SequenceSet>,
}

/// LIST in all its forms (RFC 9051 §6.3.9, LIST-EXTENDED RFC 5258,
/// LIST-STATUS RFC 5819, SPECIAL-USE RFC 6154).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct List {
    pub reference: Vec<u8>,
    pub patterns: Vec<Vec<u8>>,
    /// Selection options, upper case: SUBSCRIBED, REMOTE,
    /// RECURSIVEMATCH, SPECIAL-USE.
    pub select: Vec<String>,
    /// Return options, upper case: SUBSCRIBED, CHILDREN, SPECIAL-USE.
    pub returns: Vec<String>,
    /// RETURN (STATUS (...)).
    pub status: Option<Vec<StatusItem>>,
    /// Any selection or return option was given (an extended LIST).
    pub extended: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusItem {
    Messages,
    UidNext,
    UidValidity,
    Unseen,
    Deleted,
    Size,
    Recent,
    HighestModSeq,
}

impl StatusItem {
    pub fn name(self) -> &'static str {
        match self {
            StatusItem::Messages => "MESSAGES",
            StatusItem::UidNext => "UIDNEXT",
            StatusItem::UidValidity => "UIDVALIDITY",
            StatusItem::Unseen => "UNSEEN",
            StatusItem::Deleted => "DELETED",
            StatusItem::Size => "SIZE",
            StatusItem::Recent => "RECENT",
            StatusItem::HighestModSeq => "HIGHESTMODSEQ",
        }
    }
}

/// A date and time with its zone, as APPEND and INTERNALDATE carry it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateTime {
    /// Unix seconds.
    pub timestamp: i64,
    /// Offset from UTC in minutes.
    pub zone: i32,
}

/// One end of a range in a sequence set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqNum {
    Value(u32),
    /// `*`: the largest number in use.
    Last,
}

impl SeqNum {
    /// The number, with `*` standing for `last` (0 when the mailbox is
    /// empty).
    pub fn resolve(self, last: u32) -> u32 {
        match self {
            SeqNum::Value(n) => n,
            SeqNum::Last => last,
        }
    }
}

/// A sequence set (`1:4,7,9:*`), or `$`, the result SEARCHRES saved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SequenceSet {
    Ranges(Vec<(SeqNum, SeqNum)>),
    Saved,
}

impl SequenceSet {
    /// Whether `n` is in the set, `*` standing for `last`.
    pub fn contains(ranges: &[(SeqNum, SeqNum)], n: u32, last: u32) -> bool {
        ranges.iter().any(|&(a, b)| {
            let (a, b) = (a.resolve(last), b.resolve(last));
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            lo <= n && n <= hi
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SearchKey {
    All,
    And(Vec<SearchKey>),
    Or(Box<SearchKey>, Box<SearchKey>),
    Not(Box<SearchKey>),
    Sequence(SequenceSet),
    Uid(SequenceSet),
    /// A system flag or keyword is set (`\Seen`, `$Junk`, ...).
    Flag(String),
    /// A system flag or keyword is not set.
    NoFlag(String),
    New,
    Old,
    Recent,
    /// Day numbers (days since 1970-01-01) of INTERNALDATE ...
    Before(i64),
    On(i64),
    Since(i64),
    /// ... and of the Date header.
    SentBefore(i64),
    SentOn(i64),
    SentSince(i64),
    Larger(u64),
    Smaller(u64),
    /// A header field contains the string (an empty string: the field is
    /// present). FROM, TO, CC, BCC, SUBJECT are shorthand for these.
    Header(String, String),
    Body(String),
    Text(String),
    ModSeq(u64),
}

/// ESEARCH return options (RFC 4731) and SEARCHRES's SAVE (RFC 5182).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SearchReturn {
    pub min: bool,
    pub max: bool,
    pub all: bool,
    pub count: bool,
    pub save: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Search {
    pub uid: bool,
    /// `RETURN (...)` was given: answer with ESEARCH. `RETURN ()` means ALL.
    pub returns: Option<SearchReturn>,
    pub charset: Option<String>,
    pub key: SearchKey,
}

/// What part of a message a BODY[...] fetch names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Section {
    /// The part path (`1.2.3`); empty for the whole message.
    pub part: Vec<u32>,
    pub text: Option<SectionText>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SectionText {
    Header,
    /// Field names, as sent.
    HeaderFields(Vec<String>),
    HeaderFieldsNot(Vec<String>),
    Text,
    Mime,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchAtt {
    Envelope,
    Flags,
    InternalDate,
    Rfc822,
    Rfc822Header,
    Rfc822Size,
    Rfc822Text,
    /// BODY: the structure without extension data.
    Body,
    BodyStructure,
    Uid,
    ModSeq,
    Section {
        peek: bool,
        section: Section,
        /// `<origin.length>`.
        partial: Option<(u32, u32)>,
    },
    Binary {
        peek: bool,
        part: Vec<u32>,
        partial: Option<(u32, u32)>,
    },
    BinarySize(Vec<u32>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetch {
    pub uid: bool,
    pub set: SequenceSet,
    pub atts: Vec<FetchAtt>,
    /// CONDSTORE: only messages whose MODSEQ is higher.
    pub changed_since: Option<u64>,
    /// QRESYNC: also report UIDs expunged since then (VANISHED).
    pub vanished: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreMode {
    Replace,
    Add,
    Remove,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Store {
    pub uid: bool,
    pub set: SequenceSet,
    pub unchanged_since: Option<u64>,
    pub mode: StoreMode,
    pub silent: bool,
    pub flags: Vec<String>,
}

/// Parses one complete command (its last line's CRLF included).
pub fn parse(input: &[u8]) -> Result<Tagged, Invalid> {
    let mut p = Parser { buf: input, pos: 0 };
    let tag = match p.tag() {
        Ok(tag) => tag,
        Err(reason) => return Err(Invalid { tag: None, reason }),
    };
    let bad = |reason: String| Invalid {
        tag: Some(tag.clone()),
        reason,
    };
    p.sp()
        .map_err(|_| bad("expected a command after the tag".into()))?;
    let command = p.command().map_err(bad)?;
    p.crlf().map_err(bad)?;
    Ok(Tagged {
        tag: tag.clone(),
        command,
    })
}

type PResult<T> = Result<T, String>;

struct Parser<'a> {
    buf: &'a [u8],
    pos: usize,
}

fn is_atom_char(b: u8) -> bool {
    b > 0x20 && b < 0x7f && !matches!(b, b'(' | b')' | b'{' | b'%' | b'*' | b'"' | b'\\' | b']')
}

fn is_astring_char(b: u8) -> bool {
    is_atom_char(b) || b == b']'
}

fn is_tag_char(b: u8) -> bool {
    is_astring_char(b) && b != b'+'
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    fn rest(&self) -> &[u8] {
        &self.buf[self.pos.min(self.buf.len())..]
    }

    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, b: u8) -> PResult<()> {
        if self.eat(b) {
            Ok(())
        } else {
            Err(format!("expected `{}` {}", b as char, self.here()))
        }
    }

    /// Where the parser is, for error messages.
    fn here(&self) -> String {
        match self.peek() {
            None => "at the end of the command".into(),
            Some(b'\r' | b'\n') => "at the end of the line".into(),
            Some(_) => {
                let mut end = (self.pos + 20).min(self.buf.len());
                if let Some(i) = self.rest().iter().position(|&b| b == b'\r' || b == b'\n') {
                    end = end.min(self.pos + i);
                }
                format!("at `{}`", String::from_utf8_lossy(&self.buf[self.pos..end]))
            }
        }
    }

    fn sp(&mut self) -> PResult<()> {
        if self.eat(b' ') {
            Ok(())
        } else {
            Err(format!("expected a space {}", self.here()))
        }
    }

    fn crlf(&mut self) -> PResult<()> {
        if self.rest() == b"\r\n" || self.rest() == b"\n" {
            self.pos = self.buf.len();
            Ok(())
        } else {
            Err(format!("unexpected text {}", self.here()))
        }
    }

    fn at_end(&self) -> bool {
        matches!(self.peek(), None | Some(b'\r' | b'\n'))
    }

    fn take_while(&mut self, f: impl Fn(u8) -> bool) -> &[u8] {
        let start = self.pos;
        while self.peek().is_some_and(&f) {
            self.pos += 1;
        }
        &self.buf[start..self.pos]
    }

    fn tag(&mut self) -> PResult<String> {
        let tag = self.take_while(is_tag_char);
        if tag.is_empty() {
            return Err("a command must start with a tag".into());
        }
        if tag.len() > 64 {
            return Err("the tag is longer than 64 characters".into());
        }
        Ok(String::from_utf8_lossy(tag).into_owned())
    }

    fn atom(&mut self) -> PResult<String> {
        let atom = self.take_while(is_atom_char);
        if atom.is_empty() {
            return Err(format!("expected an atom {}", self.here()));
        }
        Ok(String::from_utf8_lossy(atom).into_owned())
    }

    /// A keyword, compared without regard to case.
    fn keyword(&mut self) -> PResult<String> {
        Ok(self.atom()?.to_ascii_uppercase())
    }

    fn number(&mut self) -> PResult<u32> {
        let digits = self.take_while(|b| b.is_ascii_digit());
        std::str::from_utf8(digits)
            .ok()
            .and_then(|d| d.parse().ok())
            .ok_or_else(|| format!("expected a number {}", self.here()))
    }

    fn number64(&mut self) -> PResult<u64> {
        let digits = self.take_while(|b| b.is_ascii_digit());
        std::str::from_utf8(digits)
            .ok()
            .and_then(|d| d.parse().ok())
            .ok_or_else(|| format!("expected a number {}", self.here()))
    }

    fn nz_number(&mut self) -> PResult<u32> {
        match self.number()? {
            0 => Err("0 is not a valid message number or UID".into()),
            n => Ok(n),
        }
    }

    fn quoted(&mut self) -> PResult<Vec<u8>> {
        self.expect(b'"')?;
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None | Some(b'\r' | b'\n') => return Err("unterminated quoted string".into()),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.pos += 1;
                    match self.peek() {
                        Some(c @ (b'"' | b'\\')) => {
                            out.push(c);
                            self.pos += 1;
                        }
                        _ => return Err("only \\\" and \\\\ may be escaped".into()),
                    }
                }
                Some(c) => {
                    out.push(c);
                    self.pos += 1;
                }
            }
        }
    }

    /// `{n}`, `{n+}` or (with `binary`) `~{n}`, its CRLF and its octets.
    fn literal(&mut self, binary: bool) -> PResult<Vec<u8>> {
        if binary {
            self.eat(b'~');
        }
        self.expect(b'{')?;
        let n = self.number64()?;
        self.eat(b'+');
        self.expect(b'}')?;
        if !self.rest().starts_with(b"\r\n") {
            return Err("a literal's size must end the line".into());
        }
        self.pos += 2;
        let n = usize::try_from(n).map_err(|_| "literal too large".to_string())?;
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        let Some(end) = end else {
            return Err("the literal is shorter than announced".into());
        };
        let data = self.buf[self.pos..end].to_vec();
        self.pos = end;
        if !binary && data.contains(&0) {
            return Err("NUL is not allowed in a literal; use BINARY".into());
        }
        Ok(data)
    }

    fn string(&mut self) -> PResult<Vec<u8>> {
        match self.peek() {
            Some(b'"') => self.quoted(),
            Some(b'{') => self.literal(false),
            _ => Err(format!("expected a string {}", self.here())),
        }
    }

    fn astring(&mut self) -> PResult<Vec<u8>> {
        match self.peek() {
            Some(b'"' | b'{') => self.string(),
            _ => {
                let s = self.take_while(|b| is_astring_char(b) || b >= 0x80);
                if s.is_empty() {
                    Err(format!("expected a string {}", self.here()))
                } else {
                    Ok(s.to_vec())
                }
            }
        }
    }

    fn astring_utf8(&mut self) -> PResult<String> {
        String::from_utf8(self.astring()?).map_err(|_| "the string is not valid UTF-8".into())
    }

    fn nil(&mut self) -> bool {
        if self.rest().len() >= 3 && self.rest()[..3].eq_ignore_ascii_case(b"NIL") {
            let after = self.rest().get(3).copied();
            if !after.is_some_and(is_atom_char) {
                self.pos += 3;
                return true;
            }
        }
        false
    }

    fn nstring(&mut self) -> PResult<Option<String>> {
        if self.nil() {
            return Ok(None);
        }
        let s = self.string()?;
        Ok(Some(String::from_utf8_lossy(&s).into_owned()))
    }

    fn mailbox(&mut self) -> PResult<Vec<u8>> {
        self.astring()
    }

    /// A LIST pattern: an astring, or atom characters with `%` and `*`.
    fn list_mailbox(&mut self) -> PResult<Vec<u8>> {
        match self.peek() {
            Some(b'"' | b'{') => self.string(),
            _ => {
                let s =
                    self.take_while(|b| is_astring_char(b) || b == b'%' || b == b'*' || b >= 0x80);
                if s.is_empty() {
                    Err(format!("expected a mailbox pattern {}", self.here()))
                } else {
                    Ok(s.to_vec())
                }
            }
        }
    }

    fn seq_num(&mut self) -> PResult<SeqNum> {
        if self.eat(b'*') {
            Ok(SeqNum::Last)
        } else {
            Ok(SeqNum::Value(self.nz_number()?))
        }
    }

    fn sequence_set(&mut self) -> PResult<SequenceSet> {
        if self.eat(b'$') {
            return Ok(SequenceSet::Saved);
        }
        let mut ranges = Vec::new();
        loop {
            let a = self.seq_num()?;
            let b = if self.eat(b':') { self.seq_num()? } else { a };
            ranges.push((a, b));
            if ranges.len() > MAX_ITEMS {
                return Err("sequence set too long".into());
            }
            if !self.eat(b',') {
                return Ok(SequenceSet::Ranges(ranges));
            }
        }
    }

    /// A flag: `\Word` or a keyword atom.
    fn flag(&mut self) -> PResult<String> {
        let backslash = self.eat(b'\\');
        let atom = self.atom()?;
        Ok(if backslash { format!("\\{atom}") } else { atom })
    }

    /// `(flag flag ...)`, or (for STORE) flags without parentheses.
    fn flag_list(&mut self, parens_optional: bool) -> PResult<Vec<String>> {
        let parens = self.eat(b'(');
        if !parens && !parens_optional {
            return Err(format!("expected a flag list {}", self.here()));
        }
        let mut flags = Vec::new();
        loop {
            if parens && self.eat(b')') {
                return Ok(flags);
            }
            if !flags.is_empty() {
                if !parens && self.at_end() {
                    return Ok(flags);
                }
                self.sp()?;
            }
            flags.push(self.flag()?);
            if flags.len() > MAX_ITEMS {
                return Err("too many flags".into());
            }
            if !parens && self.at_end() {
                return Ok(flags);
            }
        }
    }

    /// `(item item ...)` of atoms, upper-cased; `()` allowed.
    fn atom_list(&mut self) -> PResult<Vec<String>> {
        self.expect(b'(')?;
        let mut out = Vec::new();
        loop {
            if self.eat(b')') {
                return Ok(out);
            }
            if !out.is_empty() {
                self.sp()?;
            }
            out.push(self.keyword()?);
            if out.len() > MAX_ITEMS {
                return Err("list too long".into());
            }
        }
    }

    fn date(&mut self) -> PResult<i64> {
        let quoted = self.eat(b'"');
        let day = self.number()?;
        self.expect(b'-')?;
        let month = self.month()?;
        self.expect(b'-')?;
        let year = self.number()?;
        if quoted {
            self.expect(b'"')?;
        }
        civil_day(year as i64, month, day).ok_or_else(|| "no such date".into())
    }

    fn month(&mut self) -> PResult<u32> {
        const MONTHS: [&str; 12] = [
            "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
        ];
        let rest = self.rest();
        if rest.len() >= 3 {
            let name = String::from_utf8_lossy(&rest[..3]).to_ascii_uppercase();
            if let Some(i) = MONTHS.iter().position(|m| *m == name) {
                self.pos += 3;
                return Ok(i as u32 + 1);
            }
        }
        Err(format!("expected a month name {}", self.here()))
    }

    /// `"dd-Mon-yyyy hh:mm:ss +zzzz"` (the day may be space-padded).
    fn date_time(&mut self) -> PResult<DateTime> {
        self.expect(b'"')?;
        self.eat(b' ');
        let day = self.number()?;
        self.expect(b'-')?;
        let month = self.month()?;
        self.expect(b'-')?;
        let year = self.number()?;
        self.sp()?;
        let hour = self.two_digits()?;
        self.expect(b':')?;
        let minute = self.two_digits()?;
        self.expect(b':')?;
        let second = self.two_digits()?;
        self.sp()?;
        let sign = match self.peek() {
            Some(b'+') => 1,
            Some(b'-') => -1,
            _ => return Err("expected a zone like +0100".into()),
        };
        self.pos += 1;
        let zh = self.two_digits()?;
        let zm = self.two_digits()?;
        self.expect(b'"')?;
        if hour > 23 || minute > 59 || second > 60 || zm > 59 {
            return Err("no such time".into());
        }
        let days = civil_day(year as i64, month, day).ok_or("no such date")?;
        let zone = sign * (zh as i32 * 60 + zm as i32);
        let local = days * 86_400 + hour as i64 * 3600 + minute as i64 * 60 + second as i64;
        Ok(DateTime {
            timestamp: local - zone as i64 * 60,
            zone,
        })
    }

    fn two_digits(&mut self) -> PResult<u32> {
        let rest = self.rest();
        if rest.len() >= 2 && rest[0].is_ascii_digit() && rest[1].is_ascii_digit() {
            let n = u32::from(rest[0] - b'0') * 10 + u32::from(rest[1] - b'0');
            self.pos += 2;
            Ok(n)
        } else {
            Err(format!("expected two digits {}", self.here()))
        }
    }

    fn command(&mut self) -> PResult<Command> {
        let name = self.keyword()?;
        let command = match name.as_str() {
            "CAPABILITY" => Command::Capability,
            "NOOP" => Command::Noop,
            "LOGOUT" => Command::Logout,
            "STARTTLS" => Command::StartTls,
            "AUTHENTICATE" => {
                self.sp()?;
                let mechanism = self.keyword()?;
                let initial = if self.eat(b' ') {
                    let ir = self.take_while(|b| {
                        b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=')
                    });
                    if ir.is_empty() {
                        return Err("expected a base64 initial response".into());
                    }
                    Some(String::from_utf8_lossy(ir).into_owned())
                } else {
                    None
                };
                Command::Authenticate { mechanism, initial }
            }
            "LOGIN" => {
                self.sp()?;
                let user = self.astring()?;
                self.sp()?;
                let password = self.astring()?;
                Command::Login { user, password }
            }
            "ENABLE" => {
                let mut caps = Vec::new();
                while self.eat(b' ') {
                    caps.push(self.keyword()?);
                }
                if caps.is_empty() {
                    return Err("ENABLE needs at least one capability".into());
                }
                Command::Enable(caps)
            }
            "ID" => {
                self.sp()?;
                Command::Id(self.id_params()?)
            }
            "NAMESPACE" => Command::Namespace,
            "SELECT" | "EXAMINE" => {
                self.sp()?;
                let mailbox = self.mailbox()?;
                let mut condstore = false;
                let mut qresync = None;
                if self.eat(b' ') {
                    self.expect(b'(')?;
                    loop {
                        let param = self.keyword()?;
                        match param.as_str() {
                            "CONDSTORE" => condstore = true,
                            "QRESYNC" => {
                                self.sp()?;
                                qresync = Some(self.qresync()?);
                            }
                            other => return Err(format!("unknown SELECT parameter {other}")),
                        }
                        if self.eat(b')') {
                            break;
                        }
                        self.sp()?;
                    }
                }
                Command::Select {
                    mailbox,
                    read_only: name == "EXAMINE",
                    condstore,
                    qresync,
                }
            }
            "CREATE" => {
                self.sp()?;
                let mailbox = self.mailbox()?;
                let mut special_use = Vec::new();
                if self.eat(b' ') {
                    self.expect(b'(')?;
                    let param = self.keyword()?;
                    if param != "USE" {
                        return Err(format!("unknown CREATE parameter {param}"));
                    }
                    self.sp()?;
                    special_use = self.flag_list(false)?;
                    self.expect(b')')?;
                }
                Command::Create {
                    mailbox,
                    special_use,
                }
            }
            "DELETE" => {
                self.sp()?;
                Command::Delete(self.mailbox()?)
            }
            "RENAME" => {
                self.sp()?;
                let from = self.mailbox()?;
                self.sp()?;
                let to = self.mailbox()?;
                Command::Rename { from, to }
            }
            "SUBSCRIBE" => {
                self.sp()?;
                Command::Subscribe(self.mailbox()?)
            }
            "UNSUBSCRIBE" => {
                self.sp()?;
                Command::Unsubscribe(self.mailbox()?)
            }
            "LIST" => Command::List(self.list()?),
            "LSUB" => {
                self.sp()?;
                let reference = self.mailbox()?;
                self.sp()?;
                let pattern = self.list_mailbox()?;
                Command::Lsub { reference, pattern }
            }
            "STATUS" => {
                self.sp()?;
                let mailbox = self.mailbox()?;
                self.sp()?;
                let items = self.status_items()?;
                Command::Status { mailbox, items }
            }
            "APPEND" => self.append()?,
            "IDLE" => Command::Idle,
            "COMPRESS" => {
                self.sp()?;
                Command::Compress(self.keyword()?)
            }
            "GETQUOTA" => {
                self.sp()?;
                Command::GetQuota(self.astring()?)
            }
            "GETQUOTAROOT" => {
                self.sp()?;
                Command::GetQuotaRoot(self.mailbox()?)
            }
            "CHECK" => Command::Check,
            "CLOSE" => Command::Close,
            "UNSELECT" => Command::Unselect,
            "EXPUNGE" => Command::Expunge { uids: None },
            "SEARCH" => self.search(false)?,
            "FETCH" => self.fetch(false)?,
            "STORE" => self.store(false)?,
            "COPY" | "MOVE" => self.copy(false, &name)?,
            "SORT" => self.sort(false)?,
            "THREAD" => self.thread(false)?,
            "UID" => {
                self.sp()?;
                let sub = self.keyword()?;
                match sub.as_str() {
                    "SEARCH" => self.search(true)?,
                    "FETCH" => self.fetch(true)?,
                    "STORE" => self.store(true)?,
                    "COPY" | "MOVE" => self.copy(true, &sub)?,
                    "SORT" => self.sort(true)?,
                    "THREAD" => self.thread(true)?,
                    "EXPUNGE" => {
                        self.sp()?;
                        Command::Expunge {
                            uids: Some(self.sequence_set()?),
                        }
                    }
                    other => return Err(format!("unknown UID command {other}")),
                }
            }
            other => return Err(format!("unknown command {other}")),
        };
        Ok(command)
    }

    /// `(uidvalidity modseq [known-uids [(seqs uids)]])`; the sequence
    /// match data only narrows what the server may report, so it is read
    /// and not kept.
    fn qresync(&mut self) -> PResult<Qresync> {
        self.expect(b'(')?;
        let uidvalidity = self.nz_number()?;
        self.sp()?;
        let modseq = self.number64()?;
        let mut known_uids = None;
        if self.eat(b' ') {
            if self.peek() != Some(b'(') {
                known_uids = Some(self.sequence_set()?);
                self.eat(b' ');
            }
            if self.eat(b'(') {
                self.sequence_set()?;
                self.sp()?;
                self.sequence_set()?;
                self.expect(b')')?;
            }
        }
        self.expect(b')')?;
        Ok(Qresync {
            uidvalidity,
            modseq,
            known_uids,
        })
    }

    fn id_params(&mut self) -> PResult<Vec<(String, Option<String>)>> {
        if self.nil() {
            return Ok(Vec::new());
        }
        self.expect(b'(')?;
        let mut params = Vec::new();
        loop {
            if self.eat(b')') {
                return Ok(params);
            }
            if !params.is_empty() {
                self.sp()?;
            }
            let key = String::from_utf8_lossy(&self.string()?).into_owned();
            self.sp()?;
            let value = self.nstring()?;
            params.push((key, value));
            if params.len() > 30 {
                return Err("ID allows at most 30 fields".into());
            }
        }
    }

    fn list(&mut self) -> PResult<List> {
        let mut list = List::default();
        self.sp()?;
        if self.peek() == Some(b'(') {
            list.select = self.atom_list()?;
            list.extended = true;
            self.sp()?;
        }
        list.reference = self.mailbox()?;
        self.sp()?;
        if self.eat(b'(') {
            list.extended = true;
            loop {
                if !list.patterns.is_empty() && self.eat(b')') {
                    break;
                }
                if !list.patterns.is_empty() {
                    self.sp()?;
                }
                list.patterns.push(self.list_mailbox()?);
                if list.patterns.len() > 100 {
                    return Err("too many patterns".into());
                }
            }
        } else {
            list.patterns.push(self.list_mailbox()?);
        }
        if self.eat(b' ') {
            if self.keyword()? != "RETURN" {
                return Err("expected RETURN".into());
            }
            list.extended = true;
            self.sp()?;
            self.expect(b'(')?;
            loop {
                if self.eat(b')') {
                    break;
                }
                if !list.returns.is_empty() || list.status.is_some() {
                    self.sp()?;
                }
                let option = self.keyword()?;
                if option == "STATUS" {
                    self.sp()?;
                    list.status = Some(self.status_items()?);
                } else {
                    list.returns.push(option);
                }
            }
        }
        for option in &list.select {
            if !matches!(
                option.as_str(),
                "SUBSCRIBED" | "REMOTE" | "RECURSIVEMATCH" | "SPECIAL-USE"
            ) {
                return Err(format!("unknown LIST selection option {option}"));
            }
        }
        if list.select.iter().any(|o| o == "RECURSIVEMATCH")
            && !list
                .select
                .iter()
                .any(|o| o == "SUBSCRIBED" || o == "SPECIAL-USE")
        {
            return Err("RECURSIVEMATCH needs another selection option".into());
        }
        for option in &list.returns {
            if !matches!(option.as_str(), "SUBSCRIBED" | "CHILDREN" | "SPECIAL-USE") {
                return Err(format!("unknown LIST return option {option}"));
            }
        }
        Ok(list)
    }

    fn status_items(&mut self) -> PResult<Vec<StatusItem>> {
        let names = self.atom_list()?;
        if names.is_empty() {
            return Err("STATUS needs at least one item".into());
        }
        names
            .iter()
            .map(|n| {
                Ok(match n.as_str() {
                    "MESSAGES" => StatusItem::Messages,
                    "UIDNEXT" => StatusItem::UidNext,
                    "UIDVALIDITY" => StatusItem::UidValidity,
                    "UNSEEN" => StatusItem::Unseen,
                    "DELETED" => StatusItem::Deleted,
                    "SIZE" => StatusItem::Size,
                    "RECENT" => StatusItem::Recent,
                    "HIGHESTMODSEQ" => StatusItem::HighestModSeq,
                    other => return Err(format!("unknown STATUS item {other}")),
                })
            })
            .collect()
    }

    fn append(&mut self) -> PResult<Command> {
        self.sp()?;
        let mailbox = self.mailbox()?;
        self.sp()?;
        let mut flags = Vec::new();
        if self.peek() == Some(b'(') {
            flags = self.flag_list(false)?;
            self.sp()?;
        }
        let mut date = None;
        if self.peek() == Some(b'"') {
            date = Some(self.date_time()?);
            self.sp()?;
        }
        // RFC 6855 §4: `UTF8 (~{n})` carries a message with UTF-8 headers.
        if self.rest().len() >= 5 && self.rest()[..5].eq_ignore_ascii_case(b"UTF8 ") {
            self.pos += 5;
            self.expect(b'(')?;
            let message = self.literal(true)?;
            self.expect(b')')?;
            return Ok(Command::Append {
                mailbox,
                flags,
                date,
                message,
                binary: false,
            });
        }
        let binary = self.peek() == Some(b'~');
        if !matches!(self.peek(), Some(b'{' | b'~')) {
            return Err("APPEND needs the message as a literal".into());
        }
        let message = self.literal(binary)?;
        Ok(Command::Append {
            mailbox,
            flags,
            date,
            message,
            binary,
        })
    }

    fn search(&mut self, uid: bool) -> PResult<Command> {
        self.sp()?;
        let mut returns = None;
        if self.rest().len() >= 6 && self.rest()[..6].eq_ignore_ascii_case(b"RETURN") {
            self.pos += 6;
            self.sp()?;
            let mut r = SearchReturn::default();
            let options = self.atom_list()?;
            for option in &options {
                match option.as_str() {
                    "MIN" => r.min = true,
                    "MAX" => r.max = true,
                    "ALL" => r.all = true,
                    "COUNT" => r.count = true,
                    "SAVE" => r.save = true,
                    other => return Err(format!("unknown SEARCH return option {other}")),
                }
            }
            if options.is_empty() {
                r.all = true;
            }
            returns = Some(r);
            self.sp()?;
        }
        let mut charset = None;
        if self.rest().len() >= 7 && self.rest()[..7].eq_ignore_ascii_case(b"CHARSET") {
            self.pos += 7;
            self.sp()?;
            charset = Some(self.astring_utf8()?.to_ascii_uppercase());
            self.sp()?;
        }
        let key = self.search_keys()?;
        Ok(Command::Search(Search {
            uid,
            returns,
            charset,
            key,
        }))
    }

    /// One or more search keys, all of which must match.
    fn search_keys(&mut self) -> PResult<SearchKey> {
        let mut keys = vec![self.search_key(0)?];
        while self.eat(b' ') {
            keys.push(self.search_key(0)?);
            if keys.len() > MAX_ITEMS {
                return Err("too many search keys".into());
            }
        }
        Ok(if keys.len() == 1 {
            keys.remove(0)
        } else {
            SearchKey::And(keys)
        })
    }

    /// SORT: `(criteria) charset keys`.
    fn sort(&mut self, uid: bool) -> PResult<Command> {
        self.sp()?;
        let names = self.atom_list()?;
        let mut criteria = Vec::new();
        let mut reverse = false;
        for name in names {
            let key = match name.as_str() {
                "REVERSE" if !reverse => {
                    reverse = true;
                    continue;
                }
                "ARRIVAL" => SortKey::Arrival,
                "CC" => SortKey::Cc,
                "DATE" => SortKey::Date,
                "FROM" => SortKey::From,
                "SIZE" => SortKey::Size,
                "SUBJECT" => SortKey::Subject,
                "TO" => SortKey::To,
                other => return Err(format!("unknown sort criterion {other}")),
            };
            criteria.push((reverse, key));
            reverse = false;
        }
        if criteria.is_empty() || reverse {
            return Err("SORT needs criteria, and REVERSE needs one after it".into());
        }
        self.sp()?;
        let charset = self.astring_utf8()?.to_ascii_uppercase();
        self.sp()?;
        let key = self.search_keys()?;
        Ok(Command::Sort {
            uid,
            criteria,
            charset,
            key,
        })
    }

    /// THREAD: `algorithm charset keys`.
    fn thread(&mut self, uid: bool) -> PResult<Command> {
        self.sp()?;
        let algorithm = match self.keyword()?.as_str() {
            "ORDEREDSUBJECT" => ThreadAlgorithm::OrderedSubject,
            "REFERENCES" => ThreadAlgorithm::References,
            other => return Err(format!("unknown thread algorithm {other}")),
        };
        self.sp()?;
        let charset = self.astring_utf8()?.to_ascii_uppercase();
        self.sp()?;
        let key = self.search_keys()?;
        Ok(Command::Thread {
            uid,
            algorithm,
            charset,
            key,
        })
    }

    fn search_string(&mut self) -> PResult<String> {
        self.sp()?;
        String::from_utf8(self.astring()?).map_err(|_| "search strings must be UTF-8".into())
    }

    fn search_key(&mut self, depth: usize) -> PResult<SearchKey> {
        if depth > MAX_DEPTH {
            return Err("search program nested too deeply".into());
        }
        if self.eat(b'(') {
            let mut keys = vec![self.search_key(depth + 1)?];
            while self.eat(b' ') {
                keys.push(self.search_key(depth + 1)?);
                if keys.len() > MAX_ITEMS {
                    return Err("too many search keys".into());
                }
            }
            self.expect(b')')?;
            return Ok(if keys.len() == 1 {
                keys.remove(0)
            } else {
                SearchKey::And(keys)
            });
        }
        if matches!(self.peek(), Some(b'0'..=b'9' | b'*' | b'$')) {
            return Ok(SearchKey::Sequence(self.sequence_set()?));
        }
        let name = self.keyword()?;
        let flag = |f: &str| SearchKey::Flag(f.into());
        let no_flag = |f: &str| SearchKey::NoFlag(f.into());
        let header = |h: &str, s: String| SearchKey::Header(h.into(), s);
        Ok(match name.as_str() {
            "ALL" => SearchKey::All,
            "ANSWERED" => flag("\\Answered"),
            "DELETED" => flag("\\Deleted"),
            "DRAFT" => flag("\\Draft"),
            "FLAGGED" => flag("\\Flagged"),
            "SEEN" => flag("\\Seen"),
            "UNANSWERED" => no_flag("\\Answered"),
            "UNDELETED" => no_flag("\\Deleted"),
            "UNDRAFT" => no_flag("\\Draft"),
            "UNFLAGGED" => no_flag("\\Flagged"),
            "UNSEEN" => no_flag("\\Seen"),
            "NEW" => SearchKey::New,
            "OLD" => SearchKey::Old,
            "RECENT" => SearchKey::Recent,
            "KEYWORD" => {
                self.sp()?;
                SearchKey::Flag(self.atom()?)
            }
            "UNKEYWORD" => {
                self.sp()?;
                SearchKey::NoFlag(self.atom()?)
            }
            "BCC" => header("BCC", self.search_string()?),
            "CC" => header("CC", self.search_string()?),
            "FROM" => header("FROM", self.search_string()?),
            "TO" => header("TO", self.search_string()?),
            "SUBJECT" => header("SUBJECT", self.search_string()?),
            "HEADER" => {
                self.sp()?;
                let field = String::from_utf8(self.astring()?)
                    .map_err(|_| "header field names are ASCII".to_string())?;
                let value = self.search_string()?;
                SearchKey::Header(field.to_ascii_uppercase(), value)
            }
            "BODY" => SearchKey::Body(self.search_string()?),
            "TEXT" => SearchKey::Text(self.search_string()?),
            "BEFORE" | "ON" | "SINCE" | "SENTBEFORE" | "SENTON" | "SENTSINCE" => {
                self.sp()?;
                let day = self.date()?;
                match name.as_str() {
                    "BEFORE" => SearchKey::Before(day),
                    "ON" => SearchKey::On(day),
                    "SINCE" => SearchKey::Since(day),
                    "SENTBEFORE" => SearchKey::SentBefore(day),
                    "SENTON" => SearchKey::SentOn(day),
                    _ => SearchKey::SentSince(day),
                }
            }
            "LARGER" => {
                self.sp()?;
                SearchKey::Larger(self.number64()?)
            }
            "SMALLER" => {
                self.sp()?;
                SearchKey::Smaller(self.number64()?)
            }
            "UID" => {
                self.sp()?;
                SearchKey::Uid(self.sequence_set()?)
            }
            "NOT" => {
                self.sp()?;
                SearchKey::Not(Box::new(self.search_key(depth + 1)?))
            }
            "OR" => {
                self.sp()?;
                let a = self.search_key(depth + 1)?;
                self.sp()?;
                let b = self.search_key(depth + 1)?;
                SearchKey::Or(Box::new(a), Box::new(b))
            }
            "MODSEQ" => {
                self.sp()?;
                // An optional entry name and type (RFC 7162 §3.1.5): we keep
                // one MODSEQ per message, so they do not narrow anything.
                if self.peek() == Some(b'"') {
                    self.quoted()?;
                    self.sp()?;
                    let kind = self.keyword()?;
                    if !matches!(kind.as_str(), "PRIV" | "SHARED" | "ALL") {
                        return Err(format!("unknown MODSEQ entry type {kind}"));
                    }
                    self.sp()?;
                }
                SearchKey::ModSeq(self.number64()?)
            }
            other => return Err(format!("unknown search key {other}")),
        })
    }

    fn fetch(&mut self, uid: bool) -> PResult<Command> {
        self.sp()?;
        let set = self.sequence_set()?;
        self.sp()?;
        let mut atts = Vec::new();
        if self.eat(b'(') {
            loop {
                if !atts.is_empty() && self.eat(b')') {
                    break;
                }
                if !atts.is_empty() {
                    self.sp()?;
                }
                atts.push(self.fetch_att()?);
                if atts.len() > 1000 {
                    return Err("too many fetch items".into());
                }
            }
        } else {
            let save = self.pos;
            match self.keyword()?.as_str() {
                "ALL" => atts.extend([
                    FetchAtt::Flags,
                    FetchAtt::InternalDate,
                    FetchAtt::Rfc822Size,
                    FetchAtt::Envelope,
                ]),
                "FAST" => atts.extend([
                    FetchAtt::Flags,
                    FetchAtt::InternalDate,
                    FetchAtt::Rfc822Size,
                ]),
                "FULL" => atts.extend([
                    FetchAtt::Flags,
                    FetchAtt::InternalDate,
                    FetchAtt::Rfc822Size,
                    FetchAtt::Envelope,
                    FetchAtt::Body,
                ]),
                _ => {
                    self.pos = save;
                    atts.push(self.fetch_att()?);
                }
            }
        }
        let mut changed_since = None;
        let mut vanished = false;
        if self.eat(b' ') {
            self.expect(b'(')?;
            loop {
                match self.keyword()?.as_str() {
                    "CHANGEDSINCE" => {
                        self.sp()?;
                        changed_since = Some(self.number64()?);
                    }
                    "VANISHED" => vanished = true,
                    other => return Err(format!("unknown FETCH modifier {other}")),
                }
                if self.eat(b')') {
                    break;
                }
                self.sp()?;
            }
            if vanished && (changed_since.is_none() || !uid) {
                return Err("VANISHED needs UID FETCH with CHANGEDSINCE".into());
            }
        }
        if uid && !atts.contains(&FetchAtt::Uid) {
            atts.insert(0, FetchAtt::Uid);
        }
        Ok(Command::Fetch(Fetch {
            uid,
            set,
            atts,
            changed_since,
            vanished,
        }))
    }

    fn fetch_att(&mut self) -> PResult<FetchAtt> {
        // Names end at `[`, `<`, space or `)`.
        let name = self.take_while(|b| b.is_ascii_alphanumeric() || b == b'.');
        let name = String::from_utf8_lossy(name).to_ascii_uppercase();
        Ok(match name.as_str() {
            "ENVELOPE" => FetchAtt::Envelope,
            "FLAGS" => FetchAtt::Flags,
            "INTERNALDATE" => FetchAtt::InternalDate,
            "RFC822" => FetchAtt::Rfc822,
            "RFC822.HEADER" => FetchAtt::Rfc822Header,
            "RFC822.SIZE" => FetchAtt::Rfc822Size,
            "RFC822.TEXT" => FetchAtt::Rfc822Text,
            "BODYSTRUCTURE" => FetchAtt::BodyStructure,
            "UID" => FetchAtt::Uid,
            "MODSEQ" => FetchAtt::ModSeq,
            "BODY" if self.peek() != Some(b'[') => FetchAtt::Body,
            "BODY" | "BODY.PEEK" => {
                let section = self.section()?;
                let partial = self.partial()?;
                FetchAtt::Section {
                    peek: name == "BODY.PEEK",
                    section,
                    partial,
                }
            }
            "BINARY" | "BINARY.PEEK" => {
                let part = self.section_binary()?;
                let partial = self.partial()?;
                FetchAtt::Binary {
                    peek: name == "BINARY.PEEK",
                    part,
                    partial,
                }
            }
            "BINARY.SIZE" => FetchAtt::BinarySize(self.section_binary()?),
            "" => return Err(format!("expected a fetch item {}", self.here())),
            other => return Err(format!("unknown fetch item {other}")),
        })
    }

    fn part_path(&mut self) -> PResult<Vec<u32>> {
        let mut part = Vec::new();
        while matches!(self.peek(), Some(b'1'..=b'9')) {
            part.push(self.nz_number()?);
            if part.len() > MAX_DEPTH {
                return Err("section path too deep".into());
            }
            if !self.eat(b'.') {
                break;
            }
        }
        Ok(part)
    }

    fn section(&mut self) -> PResult<Section> {
        self.expect(b'[')?;
        let part = self.part_path()?;
        let mut section = Section { part, text: None };
        if self.eat(b']') {
            return Ok(section);
        }
        let name = self.take_while(|b| b.is_ascii_alphanumeric() || b == b'.');
        let name = String::from_utf8_lossy(name).to_ascii_uppercase();
        section.text = Some(match name.as_str() {
            "HEADER" => SectionText::Header,
            "TEXT" => SectionText::Text,
            "MIME" if !section.part.is_empty() => SectionText::Mime,
            "HEADER.FIELDS" | "HEADER.FIELDS.NOT" => {
                self.sp()?;
                self.expect(b'(')?;
                let mut fields = Vec::new();
                loop {
                    if !fields.is_empty() && self.eat(b')') {
                        break;
                    }
                    if !fields.is_empty() {
                        self.sp()?;
                    }
                    let f = String::from_utf8(self.astring()?)
                        .map_err(|_| "header field names are ASCII".to_string())?;
                    fields.push(f);
                    if fields.len() > 1000 {
                        return Err("too many header fields".into());
                    }
                }
                if name == "HEADER.FIELDS" {
                    SectionText::HeaderFields(fields)
                } else {
                    SectionText::HeaderFieldsNot(fields)
                }
            }
            _ => return Err(format!("unknown section {}", self.here())),
        });
        self.expect(b']')?;
        Ok(section)
    }

    fn section_binary(&mut self) -> PResult<Vec<u32>> {
        self.expect(b'[')?;
        let part = self.part_path()?;
        self.expect(b']')?;
        Ok(part)
    }

    fn partial(&mut self) -> PResult<Option<(u32, u32)>> {
        if !self.eat(b'<') {
            return Ok(None);
        }
        let origin = self.number()?;
        self.expect(b'.')?;
        let length = self.nz_number()?;
        self.expect(b'>')?;
        Ok(Some((origin, length)))
    }

    fn store(&mut self, uid: bool) -> PResult<Command> {
        self.sp()?;
        let set = self.sequence_set()?;
        self.sp()?;
        let mut unchanged_since = None;
        if self.eat(b'(') {
            let modifier = self.keyword()?;
            if modifier != "UNCHANGEDSINCE" {
                return Err(format!("unknown STORE modifier {modifier}"));
            }
            self.sp()?;
            unchanged_since = Some(self.number64()?);
            self.expect(b')')?;
            self.sp()?;
        }
        let mode = if self.eat(b'+') {
            StoreMode::Add
        } else if self.eat(b'-') {
            StoreMode::Remove
        } else {
            StoreMode::Replace
        };
        let item = self.take_while(|b| b.is_ascii_alphabetic() || b == b'.');
        let silent = match item.to_ascii_uppercase().as_slice() {
            b"FLAGS" => false,
            b"FLAGS.SILENT" => true,
            _ => return Err("expected FLAGS or FLAGS.SILENT".into()),
        };
        self.sp()?;
        let flags = if self.peek() == Some(b'(') {
            self.flag_list(false)?
        } else {
            self.flag_list(true)?
        };
        Ok(Command::Store(Store {
            uid,
            set,
            unchanged_since,
            mode,
            silent,
            flags,
        }))
    }

    fn copy(&mut self, uid: bool, name: &str) -> PResult<Command> {
        self.sp()?;
        let set = self.sequence_set()?;
        self.sp()?;
        let mailbox = self.mailbox()?;
        Ok(if name == "MOVE" {
            Command::Move { uid, set, mailbox }
        } else {
            Command::Copy { uid, set, mailbox }
        })
    }
}

pub use stratus_core::time::{civil_day, civil_from_day};

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(input: &str) -> Command {
        match parse(input.as_bytes()) {
            Ok(t) => t.command,
            Err(e) => panic!("{input:?}: {}", e.reason),
        }
    }

    fn err(input: &str) -> Invalid {
        parse(input.as_bytes()).expect_err(input)
    }

    #[test]
    fn simple_commands_and_tags() {
        assert_eq!(ok("a1 NOOP\r\n"), Command::Noop);
        assert_eq!(ok("a1 noop\r\n"), Command::Noop, "case-insensitive");
        assert_eq!(
            parse(b"x.y-1 CAPABILITY\r\n").unwrap().tag,
            "x.y-1".to_string()
        );
        assert_eq!(
            ok("a LOGIN \"al\\\"ice\" {3}\r\np w\r\n"),
            Command::Login {
                user: b"al\"ice".to_vec(),
                password: b"p w".to_vec()
            }
        );
        assert_eq!(
            ok("a AUTHENTICATE PLAIN AGFAYgBj\r\n"),
            Command::Authenticate {
                mechanism: "PLAIN".into(),
                initial: Some("AGFAYgBj".into())
            }
        );
        assert_eq!(
            ok("a ENABLE CONDSTORE utf8=accept\r\n"),
            Command::Enable(vec!["CONDSTORE".into(), "UTF8=ACCEPT".into()])
        );
        assert_eq!(
            ok("a ID (\"name\" \"mutt\" \"os\" NIL)\r\n"),
            Command::Id(vec![
                ("name".into(), Some("mutt".into())),
                ("os".into(), None)
            ])
        );
        assert_eq!(ok("a ID NIL\r\n"), Command::Id(vec![]));
    }

    #[test]
    fn bad_commands_have_readable_reasons() {
        let e = err("\r\n");
        assert_eq!(e.tag, None);
        let e = err("a FROB\r\n");
        assert_eq!(e.tag.as_deref(), Some("a"));
        assert!(e.reason.contains("unknown command FROB"), "{}", e.reason);
        assert!(err("a NOOP extra\r\n").reason.contains("unexpected text"));
        assert!(err("a SELECT\r\n").reason.contains("space"));
        assert!(err("a FETCH 0 FLAGS\r\n").reason.contains("0 is not"));
        assert!(err("a FETCH 1 (FLAGS\r\n").reason.contains("expected"));
        assert!(err("a LOGIN {5}\r\nab").reason.contains("shorter"));
        assert!(err("a LOGIN \"x\\y\" z\r\n").reason.contains("escaped"));
        assert!(
            err("a SEARCH FOO\r\n")
                .reason
                .contains("unknown search key")
        );
        let deep = format!("a SEARCH {}ALL{}\r\n", "(".repeat(40), ")".repeat(40));
        assert!(err(&deep).reason.contains("nested too deeply"));
        let nots = format!("a SEARCH {}ALL\r\n", "NOT ".repeat(40));
        assert!(err(&nots).reason.contains("nested too deeply"));
    }

    #[test]
    fn select_create_list_status() {
        assert_eq!(
            ok("a EXAMINE inbox (CONDSTORE)\r\n"),
            Command::Select {
                mailbox: b"inbox".to_vec(),
                read_only: true,
                condstore: true,
                qresync: None
            }
        );
        assert_eq!(
            ok("a CREATE \"Sent Items\" (USE (\\Sent))\r\n"),
            Command::Create {
                mailbox: b"Sent Items".to_vec(),
                special_use: vec!["\\Sent".into()]
            }
        );
        let Command::List(l) = ok(
            "a LIST (SUBSCRIBED RECURSIVEMATCH) \"\" (\"%\" \"Work/*\") RETURN (CHILDREN STATUS (MESSAGES UNSEEN))\r\n",
        ) else {
            panic!()
        };
        assert_eq!(l.select, ["SUBSCRIBED", "RECURSIVEMATCH"]);
        assert_eq!(l.patterns, [b"%".to_vec(), b"Work/*".to_vec()]);
        assert_eq!(l.returns, ["CHILDREN"]);
        assert_eq!(
            l.status,
            Some(vec![StatusItem::Messages, StatusItem::Unseen])
        );
        assert!(l.extended);
        let Command::List(plain) = ok("a LIST \"\" *\r\n") else {
            panic!()
        };
        assert!(!plain.extended);
        assert!(
            err("a LIST (RECURSIVEMATCH) \"\" *\r\n")
                .reason
                .contains("RECURSIVEMATCH")
        );
        assert_eq!(
            ok("a STATUS x (MESSAGES SIZE HIGHESTMODSEQ)\r\n"),
            Command::Status {
                mailbox: b"x".to_vec(),
                items: vec![
                    StatusItem::Messages,
                    StatusItem::Size,
                    StatusItem::HighestModSeq
                ]
            }
        );
    }

    #[test]
    fn append_with_flags_date_and_literals() {
        let Command::Append {
            mailbox,
            flags,
            date,
            message,
            binary,
        } = ok("a APPEND Drafts (\\Draft $Label) \" 1-Jul-2025 10:00:00 +0200\" {5+}\r\nhello\r\n")
        else {
            panic!()
        };
        assert_eq!(mailbox, b"Drafts");
        assert_eq!(flags, ["\\Draft", "$Label"]);
        assert_eq!(
            date,
            Some(DateTime {
                timestamp: 1_751_356_800,
                zone: 120
            })
        );
        assert_eq!(message, b"hello");
        assert!(!binary);
        let Command::Append {
            message, binary, ..
        } = ok("a APPEND x ~{3}\r\na\0b\r\n")
        else {
            panic!()
        };
        assert_eq!((message.as_slice(), binary), (&b"a\0b"[..], true));
        assert!(err("a APPEND x {3}\r\na\0b\r\n").reason.contains("NUL"));
        let Command::Append { message, .. } = ok("a APPEND x UTF8 (~{10}\r\nS: Grüße)\r\n")
        else {
            panic!()
        };
        assert_eq!(message, "S: Grüße".as_bytes());
        assert!(
            err("a APPEND x \"31-Feb-2025 00:00:00 +0000\" {1}\r\nx\r\n")
                .reason
                .contains("no such date")
        );
    }

    #[test]
    fn search_programs() {
        let Command::Search(s) = ok(
            "a UID SEARCH RETURN (MIN COUNT SAVE) CHARSET UTF-8 OR FROM \"ann\" NOT SEEN 1:5,* SINCE 1-Feb-2024 HEADER X-Spam yes LARGER 100 (UNDELETED KEYWORD $x)\r\n",
        ) else {
            panic!()
        };
        assert!(s.uid);
        assert_eq!(
            s.returns,
            Some(SearchReturn {
                min: true,
                count: true,
                save: true,
                ..Default::default()
            })
        );
        assert_eq!(s.charset.as_deref(), Some("UTF-8"));
        let SearchKey::And(keys) = s.key else {
            panic!()
        };
        assert_eq!(
            keys[0],
            SearchKey::Or(
                Box::new(SearchKey::Header("FROM".into(), "ann".into())),
                Box::new(SearchKey::Not(Box::new(SearchKey::Flag("\\Seen".into()))))
            )
        );
        assert_eq!(
            keys[1],
            SearchKey::Sequence(SequenceSet::Ranges(vec![
                (SeqNum::Value(1), SeqNum::Value(5)),
                (SeqNum::Last, SeqNum::Last)
            ]))
        );
        assert_eq!(keys[2], SearchKey::Since(civil_day(2024, 2, 1).unwrap()));
        assert_eq!(keys[3], SearchKey::Header("X-SPAM".into(), "yes".into()));
        assert_eq!(keys[4], SearchKey::Larger(100));
        let Command::Search(r) = ok("a SEARCH RETURN () $\r\n") else {
            panic!()
        };
        assert!(r.returns.unwrap().all);
        assert_eq!(r.key, SearchKey::Sequence(SequenceSet::Saved));
    }

    #[test]
    fn fetch_items() {
        let Command::Fetch(f) = ok(
            "a UID FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (From \"Subject\")]<0.100> BODY[1.2.MIME] BINARY.PEEK[1] BINARY.SIZE[2] RFC822.SIZE) (CHANGEDSINCE 7)\r\n",
        ) else {
            panic!()
        };
        assert!(f.uid);
        assert_eq!(f.changed_since, Some(7));
        assert_eq!(f.atts[0], FetchAtt::Uid, "UID FETCH always returns the UID");
        assert_eq!(
            f.atts[2],
            FetchAtt::Section {
                peek: true,
                section: Section {
                    part: vec![],
                    text: Some(SectionText::HeaderFields(vec![
                        "From".into(),
                        "Subject".into()
                    ]))
                },
                partial: Some((0, 100))
            }
        );
        assert_eq!(
            f.atts[3],
            FetchAtt::Section {
                peek: false,
                section: Section {
                    part: vec![1, 2],
                    text: Some(SectionText::Mime)
                },
                partial: None
            }
        );
        assert_eq!(
            f.atts[4],
            FetchAtt::Binary {
                peek: true,
                part: vec![1],
                partial: None
            }
        );
        assert_eq!(f.atts[5], FetchAtt::BinarySize(vec![2]));
        let Command::Fetch(all) = ok("a FETCH 1 ALL\r\n") else {
            panic!()
        };
        assert_eq!(all.atts.len(), 4);
        assert!(
            err("a FETCH 1 BODY[MIME]\r\n")
                .reason
                .contains("unknown section")
        );
        assert!(
            err("a FETCH 1 (BODY[]<0.0>)\r\n")
                .reason
                .contains("0 is not")
        );
    }

    #[test]
    fn store_copy_move_expunge() {
        assert_eq!(
            ok("a UID STORE 2:4 (UNCHANGEDSINCE 12) -FLAGS.SILENT (\\Seen $Work)\r\n"),
            Command::Store(Store {
                uid: true,
                set: SequenceSet::Ranges(vec![(SeqNum::Value(2), SeqNum::Value(4))]),
                unchanged_since: Some(12),
                mode: StoreMode::Remove,
                silent: true,
                flags: vec!["\\Seen".into(), "$Work".into()],
            })
        );
        let Command::Store(s) = ok("a STORE 1 FLAGS \\Deleted \\Seen\r\n") else {
            panic!()
        };
        assert_eq!((s.mode, s.flags.len()), (StoreMode::Replace, 2));
        assert!(matches!(
            ok("a UID MOVE 1,3 Trash\r\n"),
            Command::Move { uid: true, .. }
        ));
        assert!(matches!(
            ok("a UID EXPUNGE 1:2\r\n"),
            Command::Expunge { uids: Some(_) }
        ));
    }

    #[test]
    fn qresync_parameters() {
        let Command::Select { qresync, .. } = ok(
            "a SELECT INBOX (QRESYNC (67890007 20050715194045000 41,43:211,214:541 (1:3 4:6)))\r\n",
        ) else {
            panic!()
        };
        let q = qresync.unwrap();
        assert_eq!((q.uidvalidity, q.modseq), (67890007, 20050715194045000));
        assert!(q.known_uids.is_some());
        let Command::Select { qresync, .. } = ok("a EXAMINE x (QRESYNC (1 2))\r\n") else {
            panic!()
        };
        assert_eq!(qresync.unwrap().known_uids, None);
        let Command::Fetch(f) = ok("a UID FETCH 1:* FLAGS (CHANGEDSINCE 5 VANISHED)\r\n") else {
            panic!()
        };
        assert!(f.vanished);
        assert!(
            err("a FETCH 1:* FLAGS (CHANGEDSINCE 5 VANISHED)\r\n")
                .reason
                .contains("VANISHED")
        );
    }

    #[test]
    fn sort_and_thread() {
        assert_eq!(
            ok("a UID SORT (REVERSE DATE SUBJECT) UTF-8 UNSEEN\r\n"),
            Command::Sort {
                uid: true,
                criteria: vec![(true, SortKey::Date), (false, SortKey::Subject)],
                charset: "UTF-8".into(),
                key: SearchKey::NoFlag("\\Seen".into())
            }
        );
        assert!(
            err("a SORT (REVERSE) UTF-8 ALL\r\n")
                .reason
                .contains("REVERSE")
        );
        assert!(err("a SORT (DATE) ALL\r\n").reason.contains("space"));
        assert!(matches!(
            ok("a THREAD REFERENCES US-ASCII SINCE 1-Jan-2020\r\n"),
            Command::Thread {
                algorithm: ThreadAlgorithm::References,
                ..
            }
        ));
    }

    #[test]
    fn calendar_days() {
        assert_eq!(civil_day(1970, 1, 1), Some(0));
        assert_eq!(civil_day(2000, 2, 29), Some(11_016));
        assert_eq!(civil_day(1900, 2, 29), None);
        for d in [-1000, 0, 11_016, 20_000, 2_932_896] {
            let (y, m, day) = civil_from_day(d);
            assert_eq!(civil_day(y, m, day), Some(d));
        }
    }
}
