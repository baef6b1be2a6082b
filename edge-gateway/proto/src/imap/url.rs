//! IMAP URLs (RFC 5092) that name one message or part of it, as CATENATE
//! (RFC 4469), GENURLAUTH and URLFETCH (RFC 4467) take them:
//! `imap://user@host/Mailbox;UIDVALIDITY=n/;UID=n/;SECTION=1.2/;PARTIAL=0.100`
//! with, for URLAUTH, `;EXPIRE=<date-time>;URLAUTH=<access>:<mech>:<token>`,
//! or the relative forms `/Mailbox;UIDVALIDITY=n/;UID=n…` (this server) and
//! `;UID=n…` (the selected mailbox). No I/O.
//!
//! Written here rather than taken from a crate: the `url` crate parses the
//! generic syntax but knows nothing of IMAP's `;UID=` parameters, its
//! mailbox encoding or URLAUTH's signed prefix, which is most of the work.

use super::command::Section;
use super::parse::parse_section;

/// The message (part) a URL names, and how it is authorized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImapUrl {
    /// The user of an absolute URL, decoded.
    pub user: Option<String>,
    /// The host (with any port) of an absolute URL, lower-cased.
    pub host: Option<String>,
    /// The mailbox, decoded; `None` for the selected one.
    pub mailbox: Option<String>,
    pub uidvalidity: Option<u32>,
    pub uid: u32,
    pub section: Option<Section>,
    /// `;PARTIAL=offset[.length]`.
    pub partial: Option<(u64, Option<u64>)>,
    /// `;EXPIRE=`, as Unix seconds.
    pub expire: Option<i64>,
    pub urlauth: Option<UrlAuth>,
}

/// The `;URLAUTH=` part of an authorized URL (RFC 4467 §3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlAuth {
    /// Who may fetch it: `user+name`, `submit+name`, `authuser` or
    /// `anonymous`, as written.
    pub access: String,
    /// The URL up to and including the access identifier: what the token
    /// authorizes, and what GENURLAUTH is given.
    pub signed: String,
    /// `INTERNAL` and the token, once generated.
    pub mechanism: Option<String>,
    pub token: Option<String>,
}

/// Longest URL taken: a URL names one part; it needs no more.
pub const MAX_URL: usize = 4096;

/// Parses an IMAP URL that names a message or a part of one.
pub fn parse_url(url: &str) -> Result<ImapUrl, String> {
    let bad = |why: &str| format!("{why} in URL {url:?}");
    if url.len() > MAX_URL {
        return Err(bad("too long"));
    }
    if !url.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad("characters not allowed"));
    }
    let mut user = None;
    let mut host = None;
    let mut rest = url;
    if starts_with_ci(rest, "imap://") {
        let after = &rest[7..];
        let slash = after.find('/').ok_or_else(|| bad("no path"))?;
        let authority = &after[..slash];
        let hostport = match authority.rsplit_once('@') {
            Some((userinfo, hostport)) => {
                // `;AUTH=` names a login mechanism: nothing to act on here.
                let name = userinfo.split(';').next().unwrap_or_default();
                if name.is_empty() {
                    return Err(bad("empty user"));
                }
                user = Some(decode(name).ok_or_else(|| bad("bad %-escape"))?);
                hostport
            }
            None => authority,
        };
        if hostport.is_empty() {
            return Err(bad("no host"));
        }
        host = Some(hostport.to_ascii_lowercase());
        rest = &after[slash..];
    }
    // `/mailbox[;UIDVALIDITY=n]/;UID=…` or, relative, `;UID=…`.
    let (mailbox, uidvalidity, after_uid) = if let Some(path) = rest.strip_prefix('/') {
        let at = find_ci(path, "/;uid=").ok_or_else(|| bad("no ;UID="))?;
        let (name, validity) = match find_ci(&path[..at], ";uidvalidity=") {
            Some(v) => (
                &path[..v],
                Some(number(&path[v + 13..at]).ok_or_else(|| bad("bad UIDVALIDITY"))?),
            ),
            None => (&path[..at], None),
        };
        let name = decode(name).ok_or_else(|| bad("bad %-escape"))?;
        if name.is_empty() {
            return Err(bad("no mailbox"));
        }
        (Some(name), validity, &path[at + 6..])
    } else if starts_with_ci(rest, ";uid=") && user.is_none() {
        (None, None, &rest[5..])
    } else {
        return Err(bad("not a message URL"));
    };
    let uid_end = after_uid
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(after_uid.len());
    let uid = number(&after_uid[..uid_end])
        .filter(|&u| u > 0)
        .ok_or_else(|| bad("bad UID"))?;
    let mut out = ImapUrl {
        user,
        host,
        mailbox,
        uidvalidity,
        uid,
        section: None,
        partial: None,
        expire: None,
        urlauth: None,
    };
    let mut params = &after_uid[uid_end..];
    if let Some(p) = strip_ci(params, "/;section=") {
        let end = p
            .find(';')
            .map_or(p.len(), |i| if p[..i].ends_with('/') { i - 1 } else { i });
        let text = decode(&p[..end]).ok_or_else(|| bad("bad %-escape"))?;
        out.section = Some(parse_section(text.as_bytes()).map_err(|e| bad(&e))?);
        params = &p[end..];
    }
    if let Some(p) = strip_ci(params, "/;partial=") {
        let end = p.find(';').unwrap_or(p.len());
        let (offset, length) = match p[..end].split_once('.') {
            Some((o, l)) => (o, Some(l)),
            None => (&p[..end], None),
        };
        let offset = number(offset).ok_or_else(|| bad("bad PARTIAL"))?;
        let length = match length {
            Some(l) => Some(
                number(l)
                    .filter(|&l| l > 0)
                    .ok_or_else(|| bad("bad PARTIAL"))?,
            ),
            None => None,
        };
        out.partial = Some((offset, length));
        params = &p[end..];
    }
    if let Some(p) = strip_ci(params, ";expire=") {
        let end = find_ci(p, ";urlauth=").unwrap_or(p.len());
        out.expire = Some(rfc3339(&p[..end]).ok_or_else(|| bad("bad EXPIRE"))?);
        params = &p[end..];
    }
    if let Some(p) = strip_ci(params, ";urlauth=") {
        let (access, rest) = match p.split_once(':') {
            Some((a, r)) => (a, Some(r)),
            None => (p, None),
        };
        let valid_access = starts_with_ci(access, "user+")
            || starts_with_ci(access, "submit+")
            || access.eq_ignore_ascii_case("authuser")
            || access.eq_ignore_ascii_case("anonymous");
        if !valid_access || access.ends_with('+') {
            return Err(bad("bad URLAUTH access"));
        }
        let signed_len = url.len() - p.len() + access.len();
        let (mechanism, token) = match rest {
            None => (None, None),
            Some(r) => {
                let (m, t) = r.split_once(':').ok_or_else(|| bad("no URLAUTH token"))?;
                if m.is_empty() || t.is_empty() || !t.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(bad("bad URLAUTH token"));
                }
                (Some(m.to_ascii_uppercase()), Some(t.to_ascii_lowercase()))
            }
        };
        out.urlauth = Some(UrlAuth {
            access: access.to_string(),
            signed: url[..signed_len].to_string(),
            mechanism,
            token,
        });
        params = "";
    }
    if !params.is_empty() {
        return Err(bad("unknown parameter"));
    }
    if out.urlauth.is_some() && out.user.is_none() {
        return Err(bad("URLAUTH needs an absolute URL"));
    }
    Ok(out)
}

impl UrlAuth {
    /// The user an access identifier names (`user+ann` → `ann`).
    pub fn named_user(&self) -> Option<String> {
        let (_, name) = self.access.split_once('+')?;
        decode(name)
    }
}

fn starts_with_ci(s: &str, prefix: &str) -> bool {
    s.len() >= prefix.len() && s.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}

fn strip_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    starts_with_ci(s, prefix).then(|| &s[prefix.len()..])
}

fn find_ci(s: &str, needle: &str) -> Option<usize> {
    s.as_bytes()
        .windows(needle.len())
        .position(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

fn number<T: std::str::FromStr>(s: &str) -> Option<T> {
    if s.is_empty() || s.len() > 19 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// %-decoding to UTF-8 (RFC 5092 §3: mailbox names and users are UTF-8).
fn decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)` (RFC 3339) as Unix seconds
/// (URLAUTH's expiry; JMAP's dates).
pub fn rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't') {
        return None;
    }
    let n = |r: std::ops::Range<usize>| number::<i64>(s.get(r)?);
    let (y, mo, d) = (n(0..4)?, n(5..7)?, n(8..10)?);
    let (h, mi, sec) = (n(11..13)?, n(14..16)?, n(17..19)?);
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(frac.len());
        rest = &frac[digits..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            if rest.len() != 6 || rest.as_bytes()[3] != b':' {
                return None;
            }
            sign * (number::<i64>(&rest[1..3])? * 3600 + number::<i64>(&rest[4..6])? * 60)
        }
    };
    if !(1..=12).contains(&mo) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let day = stratus_core::time::civil_day(y, mo as u32, d as u32)?;
    Some(day * 86_400 + h * 3600 + mi * 60 + sec - offset)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imap::command::SectionText;

    #[test]
    fn message_urls() {
        let u = parse_url(
            "imap://alice@mail.example/Work%2FNotes;UIDVALIDITY=385759045/;UID=20/;SECTION=1.2.MIME/;PARTIAL=10.20",
        )
        .unwrap();
        assert_eq!(u.user.as_deref(), Some("alice"));
        assert_eq!(u.host.as_deref(), Some("mail.example"));
        assert_eq!(u.mailbox.as_deref(), Some("Work/Notes"));
        assert_eq!((u.uidvalidity, u.uid), (Some(385_759_045), 20));
        let s = u.section.unwrap();
        assert_eq!((s.part, s.text), (vec![1, 2], Some(SectionText::Mime)));
        assert_eq!(u.partial, Some((10, Some(20))));
        // Mailbox names may hold slashes; relative forms.
        let u = parse_url("/Lists/Rust;uidvalidity=7/;uid=3/;section=HEADER.FIELDS%20(TO%20FROM)")
            .unwrap();
        assert_eq!((u.mailbox.as_deref(), u.uid), (Some("Lists/Rust"), 3));
        assert!(
            matches!(u.section.unwrap().text, Some(SectionText::HeaderFields(f)) if f == ["TO", "FROM"])
        );
        let u = parse_url(";UID=9").unwrap();
        assert_eq!((u.mailbox, u.uid, u.user), (None, 9, None));
        let u = parse_url("/Entw%C3%BCrfe/;UID=1").unwrap();
        assert_eq!(u.mailbox.as_deref(), Some("Entwürfe"));
    }

    #[test]
    fn urlauth_urls() {
        let base = "imap://joe@example.com/INBOX;UIDVALIDITY=1/;UID=5;EXPIRE=2030-01-01T00:00:00Z;URLAUTH=submit+fred";
        let u = parse_url(base).unwrap();
        let a = u.urlauth.unwrap();
        assert_eq!(a.signed, base);
        assert_eq!((&a.mechanism, &a.token), (&None, &None));
        assert_eq!(a.named_user().as_deref(), Some("fred"));
        assert_eq!(u.expire, Some(1_893_456_000));
        let u = parse_url(&format!("{base}:internal:0A1b")).unwrap();
        let a = u.urlauth.unwrap();
        assert_eq!(a.signed, base);
        assert_eq!(
            (a.mechanism.as_deref(), a.token.as_deref()),
            (Some("INTERNAL"), Some("0a1b"))
        );
    }

    #[test]
    fn bad_urls_are_refused() {
        for bad in [
            "",
            "imap://",
            "imap://host",
            "imap://host/INBOX",
            "/INBOX/;UID=0",
            "/INBOX/;UID=x",
            "/;UID=1",
            "/INBOX;UIDVALIDITY=/;UID=1",
            "/INBOX/;UID=1/;SECTION=BOGUS",
            "/INBOX/;UID=1/;PARTIAL=1.0",
            "/INBOX/;UID=1;URLAUTH=user+bob",
            "imap://a@h/INBOX/;UID=1;URLAUTH=root",
            "imap://a@h/INBOX/;UID=1;URLAUTH=user+b:internal:xyz",
            "imap://a@h/INBOX/;UID=1;EXPIRE=tomorrow;URLAUTH=authuser",
            "/INBOX/;UID=1;FOO=1",
            "/IN BOX/;UID=1",
            "/%ZZ/;UID=1",
            "/%C3/;UID=1",
            ";UID=1/;SECTION=1.",
        ] {
            assert!(parse_url(bad).is_err(), "{bad:?}");
        }
        assert!(parse_url(&format!("/{}/;UID=1", "a".repeat(MAX_URL))).is_err());
    }
}
