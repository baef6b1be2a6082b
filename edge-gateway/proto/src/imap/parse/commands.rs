//! The grammar of the IMAP verbs, apart from those of `search`.

use super::{PResult, Parser};
use crate::imap::command::*;

impl Parser<'_> {
    pub(super) fn command(&mut self) -> PResult<Command> {
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
            "GETMETADATA" => self.get_metadata()?,
            "NOTIFY" => self.notify()?,
            "CANCELUPDATE" => {
                let mut tags = Vec::new();
                while self.eat(b' ') {
                    let tag = String::from_utf8(self.string()?)
                        .map_err(|_| "a tag is ASCII".to_string())?;
                    tags.push(tag);
                    if tags.len() > MAX_URLS {
                        return Err("too many tags".into());
                    }
                }
                if tags.is_empty() {
                    return Err("CANCELUPDATE needs a tag".into());
                }
                Command::CancelUpdate(tags)
            }
            "GENURLAUTH" => {
                let mut urls = Vec::new();
                while self.eat(b' ') {
                    let url = self.astring_utf8()?;
                    self.sp()?;
                    urls.push((url, self.keyword()?));
                    if urls.len() > MAX_URLS {
                        return Err(format!("at most {MAX_URLS} URLs"));
                    }
                }
                if urls.is_empty() {
                    return Err("GENURLAUTH needs a URL and a mechanism".into());
                }
                Command::GenUrlAuth(urls)
            }
            "RESETKEY" => {
                let mut mailbox = None;
                let mut mechanisms = Vec::new();
                if self.eat(b' ') {
                    mailbox = Some(self.mailbox()?);
                    while self.eat(b' ') {
                        mechanisms.push(self.keyword()?);
                        if mechanisms.len() > MAX_URLS {
                            return Err("too many mechanisms".into());
                        }
                    }
                }
                Command::ResetKey {
                    mailbox,
                    mechanisms,
                }
            }
            "URLFETCH" => {
                let mut args = Vec::new();
                while self.eat(b' ') {
                    if self.eat(b'(') {
                        let url = self.astring_utf8()?;
                        let mut params = Vec::new();
                        while self.eat(b' ') {
                            params.push(self.keyword()?);
                            if params.len() > 8 {
                                return Err("too many URLFETCH parameters".into());
                            }
                        }
                        self.expect(b')')?;
                        args.push(UrlFetchArg {
                            url,
                            params: Some(params),
                        });
                    } else {
                        args.push(UrlFetchArg {
                            url: self.astring_utf8()?,
                            params: None,
                        });
                    }
                    if args.len() > MAX_URLS {
                        return Err(format!("at most {MAX_URLS} URLs"));
                    }
                }
                if args.is_empty() {
                    return Err("URLFETCH needs a URL".into());
                }
                Command::UrlFetch(args)
            }
            "SETMETADATA" => self.set_metadata()?,
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
    pub(super) fn qresync(&mut self) -> PResult<Qresync> {
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

    pub(super) fn id_params(&mut self) -> PResult<Vec<(String, Option<String>)>> {
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

    pub(super) fn list(&mut self) -> PResult<List> {
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

    pub(super) fn status_items(&mut self) -> PResult<Vec<StatusItem>> {
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

    /// `NOTIFY NONE` or `NOTIFY SET [STATUS] (filter events) ...` (RFC
    /// 5465 §8). MessageNew and MessageExpunge go together, and FlagChange
    /// or AnnotationChange need them.
    fn notify(&mut self) -> PResult<Command> {
        self.sp()?;
        match self.keyword()?.as_str() {
            "NONE" => return Ok(Command::Notify(None)),
            "SET" => {}
            other => return Err(format!("NOTIFY takes SET or NONE, not {other}")),
        }
        self.sp()?;
        let mut set = NotifySet {
            status: false,
            groups: Vec::new(),
        };
        if self.rest().len() >= 7 && self.rest()[..7].eq_ignore_ascii_case(b"STATUS ") {
            self.pos += 7;
            set.status = true;
        }
        let mut names = 0;
        loop {
            self.expect(b'(')?;
            let filter = match self.keyword()?.as_str() {
                "SELECTED" => NotifyFilter::Selected,
                "SELECTED-DELAYED" => NotifyFilter::SelectedDelayed,
                "INBOXES" => NotifyFilter::Inboxes,
                "PERSONAL" => NotifyFilter::Personal,
                "SUBSCRIBED" => NotifyFilter::Subscribed,
                kind @ ("SUBTREE" | "MAILBOXES") => {
                    self.sp()?;
                    let mut list = Vec::new();
                    if self.eat(b'(') {
                        loop {
                            list.push(self.mailbox()?);
                            if names + list.len() > MAX_NOTIFY_MAILBOXES {
                                return Err(format!(
                                    "at most {MAX_NOTIFY_MAILBOXES} mailboxes in one NOTIFY"
                                ));
                            }
                            if self.eat(b')') {
                                break;
                            }
                            self.sp()?;
                        }
                    } else {
                        list.push(self.mailbox()?);
                    }
                    names += list.len();
                    if kind == "SUBTREE" {
                        NotifyFilter::Subtree(list)
                    } else {
                        NotifyFilter::Mailboxes(list)
                    }
                }
                other => return Err(format!("unknown NOTIFY filter {other}")),
            };
            self.sp()?;
            let mut events = Vec::new();
            let mut fetch = Vec::new();
            if !self.nil_or_none() {
                self.expect(b'(')?;
                loop {
                    let event = match self.keyword()?.as_str() {
                        "MESSAGENEW" => {
                            if self.rest().starts_with(b" (") {
                                self.pos += 2;
                                loop {
                                    fetch.push(self.fetch_att()?);
                                    if self.eat(b')') {
                                        break;
                                    }
                                    self.sp()?;
                                    if fetch.len() > 64 {
                                        return Err("too many fetch attributes".into());
                                    }
                                }
                            }
                            NotifyEvent::MessageNew
                        }
                        "MESSAGEEXPUNGE" => NotifyEvent::MessageExpunge,
                        "FLAGCHANGE" => NotifyEvent::FlagChange,
                        "ANNOTATIONCHANGE" => NotifyEvent::AnnotationChange,
                        "MAILBOXNAME" => NotifyEvent::MailboxName,
                        "SUBSCRIPTIONCHANGE" => NotifyEvent::SubscriptionChange,
                        "MAILBOXMETADATACHANGE" => NotifyEvent::MailboxMetadataChange,
                        "SERVERMETADATACHANGE" => NotifyEvent::ServerMetadataChange,
                        other => return Err(format!("unknown NOTIFY event {other}")),
                    };
                    if !events.contains(&event) {
                        events.push(event);
                    }
                    if self.eat(b')') {
                        break;
                    }
                    self.sp()?;
                }
                let has = |e| events.contains(&e);
                if has(NotifyEvent::MessageNew) != has(NotifyEvent::MessageExpunge)
                    || ((has(NotifyEvent::FlagChange) || has(NotifyEvent::AnnotationChange))
                        && !has(NotifyEvent::MessageNew))
                {
                    return Err(
                        "MessageNew and MessageExpunge go together, and FlagChange needs them"
                            .into(),
                    );
                }
            }
            self.expect(b')')?;
            set.groups.push(NotifyGroup {
                filter,
                events,
                fetch,
            });
            if set.groups.len() > 64 {
                return Err("too many NOTIFY groups".into());
            }
            if !self.eat(b' ') {
                break;
            }
        }
        Ok(Command::Notify(Some(set)))
    }

    fn nil_or_none(&mut self) -> bool {
        if self.rest().len() >= 4 && self.rest()[..4].eq_ignore_ascii_case(b"NONE") {
            self.pos += 4;
            return true;
        }
        false
    }

    /// `GETMETADATA [(MAXSIZE n DEPTH d)] mailbox (entries)` (RFC 5464).
    fn get_metadata(&mut self) -> PResult<Command> {
        self.sp()?;
        let mut max_size = None;
        let mut depth = MetadataDepth::Zero;
        if self.eat(b'(') {
            loop {
                match self.keyword()?.as_str() {
                    "MAXSIZE" => {
                        self.sp()?;
                        max_size = Some(self.number()?);
                    }
                    "DEPTH" => {
                        self.sp()?;
                        depth = match self.keyword()?.as_str() {
                            "0" => MetadataDepth::Zero,
                            "1" => MetadataDepth::One,
                            "INFINITY" => MetadataDepth::Infinity,
                            other => return Err(format!("bad DEPTH {other}")),
                        };
                    }
                    other => return Err(format!("unknown GETMETADATA option {other}")),
                }
                if self.eat(b')') {
                    break;
                }
                self.sp()?;
            }
            self.sp()?;
        }
        let mailbox = self.mailbox()?;
        self.sp()?;
        let mut entries = Vec::new();
        let list = self.eat(b'(');
        loop {
            entries.push(self.metadata_entry()?);
            if !list || self.eat(b')') {
                break;
            }
            self.sp()?;
            if entries.len() > MAX_ITEMS {
                return Err("too many entries".into());
            }
        }
        Ok(Command::GetMetadata {
            mailbox,
            entries,
            max_size,
            depth,
        })
    }

    /// `SETMETADATA mailbox (entry value ...)`; a value is NIL, a string
    /// or a literal8 (RFC 5464 §4.3).
    fn set_metadata(&mut self) -> PResult<Command> {
        self.sp()?;
        let mailbox = self.mailbox()?;
        self.sp()?;
        self.expect(b'(')?;
        let mut entries = Vec::new();
        loop {
            let entry = self.metadata_entry()?;
            self.sp()?;
            let value = if self.nil() {
                None
            } else if self.peek() == Some(b'~') {
                Some(self.literal(true)?)
            } else {
                Some(self.string()?)
            };
            entries.push((entry, value));
            if entries.len() > MAX_METADATA_CHANGES {
                return Err(format!(
                    "at most {MAX_METADATA_CHANGES} entries in one SETMETADATA"
                ));
            }
            if self.eat(b')') {
                break;
            }
            self.sp()?;
        }
        Ok(Command::SetMetadata { mailbox, entries })
    }

    fn metadata_entry(&mut self) -> PResult<String> {
        let entry = self.astring_utf8()?;
        if !valid_metadata_entry(&entry) {
            return Err(format!("bad METADATA entry name {entry:?}"));
        }
        Ok(entry)
    }

    /// APPEND: the mailbox, then one message or, with MULTIAPPEND (RFC
    /// 3502), several, each with its own flags and date.
    pub(super) fn append(&mut self) -> PResult<Command> {
        self.sp()?;
        let mailbox = self.mailbox()?;
        let mut messages = Vec::new();
        while self.eat(b' ') {
            messages.push(self.append_message()?);
            if messages.len() > MAX_APPEND_MESSAGES {
                return Err(format!(
                    "at most {MAX_APPEND_MESSAGES} messages in one APPEND"
                ));
            }
        }
        if messages.is_empty() {
            return Err("APPEND needs the message as a literal".into());
        }
        Ok(Command::Append { mailbox, messages })
    }

    fn append_message(&mut self) -> PResult<AppendMessage> {
        let mut flags = Vec::new();
        if self.peek() == Some(b'(') {
            flags = self.message_flags(false)?;
            self.sp()?;
        }
        let mut date = None;
        if self.peek() == Some(b'"') {
            date = Some(self.date_time()?);
            self.sp()?;
        }
        // RFC 4469: `CATENATE (TEXT {n} URL "…" …)`.
        if self.rest().len() >= 9 && self.rest()[..9].eq_ignore_ascii_case(b"CATENATE ") {
            self.pos += 9;
            self.expect(b'(')?;
            let mut catenate = Vec::new();
            loop {
                match self.keyword()?.as_str() {
                    "TEXT" => {
                        self.sp()?;
                        let binary = self.peek() == Some(b'~');
                        catenate.push(CatPart::Text(self.literal(binary)?));
                    }
                    "URL" => {
                        self.sp()?;
                        catenate.push(CatPart::Url(self.astring_utf8()?));
                    }
                    other => return Err(format!("unknown CATENATE part {other}")),
                }
                if catenate.len() > MAX_CATENATE_PARTS {
                    return Err(format!("at most {MAX_CATENATE_PARTS} CATENATE parts"));
                }
                if self.eat(b')') {
                    break;
                }
                self.sp()?;
            }
            return Ok(AppendMessage {
                flags,
                date,
                message: Vec::new(),
                binary: false,
                catenate,
            });
        }
        // RFC 6855 §4: `UTF8 (~{n})` carries a message with UTF-8 headers.
        if self.rest().len() >= 5 && self.rest()[..5].eq_ignore_ascii_case(b"UTF8 ") {
            self.pos += 5;
            self.expect(b'(')?;
            let message = self.literal(true)?;
            self.expect(b')')?;
            return Ok(AppendMessage {
                flags,
                date,
                message,
                binary: false,
                catenate: Vec::new(),
            });
        }
        let binary = self.peek() == Some(b'~');
        if !matches!(self.peek(), Some(b'{' | b'~')) {
            return Err("APPEND needs the message as a literal".into());
        }
        let message = self.literal(binary)?;
        Ok(AppendMessage {
            flags,
            date,
            message,
            binary,
            catenate: Vec::new(),
        })
    }

    pub(super) fn store(&mut self, uid: bool) -> PResult<Command> {
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
        let parens = self.peek() == Some(b'(');
        let flags = self.message_flags(!parens)?;
        Ok(Command::Store(Store {
            uid,
            set,
            unchanged_since,
            mode,
            silent,
            flags,
        }))
    }

    pub(super) fn copy(&mut self, uid: bool, name: &str) -> PResult<Command> {
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
