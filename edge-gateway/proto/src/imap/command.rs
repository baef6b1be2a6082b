//! IMAP commands as values: one [`Command`] variant per verb, with its
//! arguments typed (sequence sets, search keys, fetch attributes, store
//! modes). [`super::parse`] makes them from bytes; the session applies them.
//!
//! The verbs are those of IMAP4rev2 (RFC 9051) and IMAP4rev1 (RFC 3501)
//! and of the extensions Stratus serves: UIDPLUS, MOVE, LITERAL+, ENABLE,
//! ID, NAMESPACE, UNSELECT, SPECIAL-USE and CREATE-SPECIAL-USE, CONDSTORE
//! and QRESYNC, ESEARCH, SEARCHRES, SORT and THREAD, LIST-EXTENDED,
//! LIST-STATUS, STATUS=SIZE, SASL-IR, QUOTA, BINARY and UTF8=ACCEPT.
//!
//! Mailbox names come out as the client sent them; the session decodes
//! modified UTF-7 where the client has not enabled UTF-8.

/// Deepest nesting of parentheses in a search program or fetch list.
pub const MAX_DEPTH: usize = 32;
/// Most items in one list (search keys, fetch items, flags, ...).
pub const MAX_ITEMS: usize = 10_000;

/// Messages one MULTIAPPEND may carry (their octets are bounded apart,
/// by the append limit on the whole command).
pub const MAX_APPEND_MESSAGES: usize = 1000;

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
    /// APPEND, with MULTIAPPEND (RFC 3502): one message or more.
    Append {
        mailbox: Vec<u8>,
        messages: Vec<AppendMessage>,
    },
    Idle,
    GetQuota(Vec<u8>),
    GetQuotaRoot(Vec<u8>),
    /// GETMETADATA (RFC 5464): entries of a mailbox, or of the server when
    /// the mailbox is empty.
    GetMetadata {
        mailbox: Vec<u8>,
        entries: Vec<String>,
        /// MAXSIZE: leave out longer values (reported in LONGENTRIES).
        max_size: Option<u32>,
        depth: MetadataDepth,
    },
    /// CANCELUPDATE (RFC 5267 §4.2): the tags of searches to stop
    /// updating.
    CancelUpdate(Vec<String>),
    /// NOTIFY (RFC 5465): `None` for NOTIFY NONE.
    Notify(Option<NotifySet>),
    /// GENURLAUTH (RFC 4467): URLs to authorize, each with a mechanism.
    GenUrlAuth(Vec<(String, String)>),
    /// RESETKEY: new access keys for one mailbox, or all of the user's.
    ResetKey {
        mailbox: Option<Vec<u8>>,
        mechanisms: Vec<String>,
    },
    /// URLFETCH (RFC 4467, with RFC 5524's parameters).
    UrlFetch(Vec<UrlFetchArg>),
    /// SETMETADATA: entries set, or removed (NIL), all or none.
    SetMetadata {
        mailbox: Vec<u8>,
        entries: Vec<(String, Option<Vec<u8>>)>,
    },
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
        /// ESORT (RFC 5267): `RETURN (...)` was given.
        returns: Option<SearchReturn>,
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

/// How far below a METADATA entry GETMETADATA looks (RFC 5464 §4.2.2).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum MetadataDepth {
    #[default]
    Zero,
    One,
    Infinity,
}

/// Entries one SETMETADATA may change (its changes are one transaction).
pub const MAX_METADATA_CHANGES: usize = 50;

/// Whether `entry` is a METADATA entry name (RFC 5464 §3.2): under
/// `/private/` or `/shared/`, slash-separated non-empty parts of printable
/// ASCII without `*` or `%`, at most 1024 octets.
pub fn valid_metadata_entry(entry: &str) -> bool {
    let lower = entry.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("/private/")
        .or_else(|| lower.strip_prefix("/shared/"));
    entry.len() <= 1024
        && rest.is_some_and(|rest| {
            !rest.is_empty()
                && rest.split('/').all(|part| !part.is_empty())
                && rest
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && b != b'*' && b != b'%')
        })
}

/// NOTIFY SET: which events of which mailboxes to report unasked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifySet {
    /// `STATUS`: report the mailboxes' status at once.
    pub status: bool,
    pub groups: Vec<NotifyGroup>,
}

/// One `(filter events)` of NOTIFY SET; no events means NONE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyGroup {
    pub filter: NotifyFilter,
    pub events: Vec<NotifyEvent>,
    /// MessageNew's fetch attributes, sent with each new message.
    pub fetch: Vec<FetchAtt>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotifyFilter {
    Selected,
    SelectedDelayed,
    Inboxes,
    Personal,
    Subscribed,
    /// The mailboxes and every one below them.
    Subtree(Vec<Vec<u8>>),
    Mailboxes(Vec<Vec<u8>>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifyEvent {
    MessageNew,
    MessageExpunge,
    FlagChange,
    AnnotationChange,
    MailboxName,
    SubscriptionChange,
    MailboxMetadataChange,
    ServerMetadataChange,
}

/// Mailbox names one NOTIFY may list.
pub const MAX_NOTIFY_MAILBOXES: usize = 1000;

/// One URL of a URLFETCH: `params` (upper-cased: BODY, BINARY,
/// BODYPARTSTRUCTURE) when given in RFC 5524's parenthesised form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlFetchArg {
    pub url: String,
    pub params: Option<Vec<String>>,
}

/// URLs one GENURLAUTH or URLFETCH may name.
pub const MAX_URLS: usize = 100;

/// One message of an APPEND.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendMessage {
    pub flags: Vec<String>,
    pub date: Option<DateTime>,
    /// The message; empty when it is to be put together from `catenate`.
    pub message: Vec<u8>,
    /// Sent as `~{n}` (BINARY, RFC 3516).
    pub binary: bool,
    /// CATENATE (RFC 4469): the message as parts to join, in order.
    pub catenate: Vec<CatPart>,
}

/// One part of a CATENATE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CatPart {
    Text(Vec<u8>),
    /// An IMAP URL naming a message or part of one.
    Url(String),
}

/// Parts one CATENATE may join.
pub const MAX_CATENATE_PARTS: usize = 256;

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
    /// SORT=DISPLAY (RFC 5957): the first address's display name.
    DisplayFrom,
    DisplayTo,
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
            Command::GetMetadata { .. } => "GETMETADATA",
            Command::GenUrlAuth(_) => "GENURLAUTH",
            Command::Notify(_) => "NOTIFY",
            Command::CancelUpdate(_) => "CANCELUPDATE",
            Command::ResetKey { .. } => "RESETKEY",
            Command::UrlFetch(_) => "URLFETCH",
            Command::SetMetadata { .. } => "SETMETADATA",
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
    /// PARTIAL (RFC 5267 §4.4, RFC 9394): a window of the results.
    pub partial: Option<PartialRange>,
    /// UPDATE (CONTEXT=SEARCH, CONTEXT=SORT, RFC 5267 §4): keep the
    /// client told of messages that join or leave the result.
    pub update: bool,
}

/// A window of results (RFC 9394): positions `first..=last` counted from
/// 1, from the start, or from the end when `from_end` (`-1` is the last).
/// The client may give the bounds in either order; these are ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartialRange {
    pub first: u32,
    pub last: u32,
    pub from_end: bool,
}

impl PartialRange {
    /// The indices of the window in a list of `len` results.
    pub fn window(&self, len: usize) -> std::ops::Range<usize> {
        let (first, last) = (self.first as usize, self.last as usize);
        if self.from_end {
            len.saturating_sub(last)..len.saturating_sub(first - 1)
        } else {
            (first - 1).min(len)..last.min(len)
        }
    }
}

impl std::fmt::Display for PartialRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.from_end {
            write!(f, "-{}:-{}", self.first, self.last)
        } else {
            write!(f, "{}:{}", self.first, self.last)
        }
    }
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
    /// PARTIAL (RFC 9394): only this window of the set's messages.
    pub partial: Option<PartialRange>,
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
