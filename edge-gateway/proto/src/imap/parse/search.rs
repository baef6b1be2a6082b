//! The grammar of SEARCH, SORT, THREAD and FETCH: search keys, fetch
//! attributes, body sections and partial ranges.

use super::{PResult, Parser};
use crate::imap::command::*;

impl Parser<'_> {
    pub(super) fn search(&mut self, uid: bool) -> PResult<Command> {
        self.sp()?;
        let returns = self.search_return()?;
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

    /// `RETURN (options) ` of ESEARCH (RFC 4731), SEARCHRES (RFC 5182),
    /// ESORT and PARTIAL (RFC 5267, 9394), if there: `RETURN ()` is ALL.
    fn search_return(&mut self) -> PResult<Option<SearchReturn>> {
        if !(self.rest().len() >= 7 && self.rest()[..7].eq_ignore_ascii_case(b"RETURN ")) {
            return Ok(None);
        }
        self.pos += 7;
        let mut r = SearchReturn::default();
        let options = self.atom_list()?;
        let mut options = options.iter();
        while let Some(option) = options.next() {
            match option.as_str() {
                "MIN" => r.min = true,
                "MAX" => r.max = true,
                "ALL" => r.all = true,
                "COUNT" => r.count = true,
                "SAVE" => r.save = true,
                "UPDATE" => r.update = true,
                "PARTIAL" => {
                    let range = options.next().ok_or("PARTIAL needs a range")?;
                    r.partial = Some(partial_range(range)?);
                }
                other => return Err(format!("unknown SEARCH return option {other}")),
            }
        }
        if r.all && r.partial.is_some() {
            return Err("ALL and PARTIAL exclude each other (RFC 9394)".into());
        }
        // `RETURN ()` is ALL; so is `RETURN (UPDATE)` (RFC 5267 §4.1).
        if (SearchReturn { update: false, ..r }) == SearchReturn::default() {
            r.all = true;
        }
        self.sp()?;
        Ok(Some(r))
    }

    /// One or more search keys, all of which must match.
    pub(super) fn search_keys(&mut self) -> PResult<SearchKey> {
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
    pub(super) fn sort(&mut self, uid: bool) -> PResult<Command> {
        self.sp()?;
        let returns = self.search_return()?;
        if returns.is_some_and(|r| r.save) {
            return Err("SAVE is for SEARCH".into());
        }
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
                "DISPLAYFROM" => SortKey::DisplayFrom,
                "DISPLAYTO" => SortKey::DisplayTo,
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
            returns,
            criteria,
            charset,
            key,
        })
    }

    /// THREAD: `algorithm charset keys`.
    pub(super) fn thread(&mut self, uid: bool) -> PResult<Command> {
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

    pub(super) fn search_string(&mut self) -> PResult<String> {
        self.sp()?;
        String::from_utf8(self.astring()?).map_err(|_| "search strings must be UTF-8".into())
    }

    pub(super) fn search_key(&mut self, depth: usize) -> PResult<SearchKey> {
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

    pub(super) fn fetch(&mut self, uid: bool) -> PResult<Command> {
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
        let mut partial = None;
        if self.eat(b' ') {
            self.expect(b'(')?;
            loop {
                match self.keyword()?.as_str() {
                    "CHANGEDSINCE" => {
                        self.sp()?;
                        changed_since = Some(self.number64()?);
                    }
                    "VANISHED" => vanished = true,
                    "PARTIAL" => {
                        self.sp()?;
                        partial = Some(partial_range(&self.atom()?)?);
                    }
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
            partial,
        }))
    }

    pub(super) fn fetch_att(&mut self) -> PResult<FetchAtt> {
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

    pub(super) fn part_path(&mut self) -> PResult<Vec<u32>> {
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

    pub(super) fn section(&mut self) -> PResult<Section> {
        self.expect(b'[')?;
        let part = self.part_path()?;
        let mut section = Section { part, text: None };
        // A path is followed by `]` or by `.` and a name (`1.MIME`), never
        // by `.` and `]`.
        let dangling = !section.part.is_empty() && self.buf.get(self.pos - 1) == Some(&b'.');
        if self.eat(b']') {
            if dangling {
                return Err("a section path cannot end with `.`".into());
            }
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

    pub(super) fn section_binary(&mut self) -> PResult<Vec<u32>> {
        self.expect(b'[')?;
        let part = self.part_path()?;
        self.expect(b']')?;
        Ok(part)
    }

    pub(super) fn partial(&mut self) -> PResult<Option<(u32, u32)>> {
        if !self.eat(b'<') {
            return Ok(None);
        }
        let origin = self.number()?;
        self.expect(b'.')?;
        let length = self.nz_number()?;
        self.expect(b'>')?;
        Ok(Some((origin, length)))
    }
}

/// `n:m` or `-n:-m` (RFC 9394 `partial-range`), bounds in either order.
fn partial_range(text: &str) -> PResult<PartialRange> {
    let bad = || format!("bad PARTIAL range {text}");
    let (a, b) = text.split_once(':').ok_or_else(bad)?;
    let from_end = a.starts_with('-');
    if b.starts_with('-') != from_end {
        return Err(bad());
    }
    let n = |s: &str| -> PResult<u32> {
        let s = s.strip_prefix('-').unwrap_or(s);
        match s.parse::<u32>() {
            Ok(n) if n > 0 && s.bytes().all(|c| c.is_ascii_digit()) => Ok(n),
            _ => Err(bad()),
        }
    };
    let (a, b) = (n(a)?, n(b)?);
    Ok(PartialRange {
        first: a.min(b),
        last: a.max(b),
        from_end,
    })
}
