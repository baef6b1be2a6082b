//! GETMETADATA and SETMETADATA (RFC 5464, METADATA and METADATA-SERVER):
//! entries of a mailbox, or of the server (mailbox `""`), for the user.
//! Values are bytes as set (a literal8 may carry NUL); at most
//! [`MAX_ANNOTATIONS`] entries per mailbox of at most
//! [`MAX_ANNOTATION_SIZE`] octets each. `/private/specialuse` shows a
//! mailbox's special use (RFC 6154 §4) and is set by CREATE, not here.

use std::fmt::Write as _;

use stratus_core::accounts::{MAX_ANNOTATION_SIZE, MAX_ANNOTATIONS};
use stratus_proto::imap::command::MetadataDepth;
use stratus_proto::imap::wire::{self, Lossy};

use crate::conn::Conn;
use crate::imap::session::*;

const SPECIAL_USE_ENTRY: &str = "/private/specialuse";

impl Session<'_> {
    /// The scope of `raw`: `""` for the server, else the mailbox's id (and
    /// its special use), or NO when it does not exist.
    async fn metadata_scope(&self, raw: &[u8]) -> Result<(String, Option<&'static str>), Refusal> {
        if raw.is_empty() {
            return Ok((String::new(), None));
        }
        let record = self.existing_mailbox(raw).await?;
        Ok((record.id, record.special_use.map(|s| s.attribute())))
    }

    pub(in crate::imap) async fn get_metadata<S>(
        &mut self,
        conn: &mut Conn<S>,
        raw: &[u8],
        entries: &[String],
        max_size: Option<u32>,
        depth: MetadataDepth,
    ) -> Reply {
        let (scope, special_use) = self.metadata_scope(raw).await?;
        let mut stored = self
            .ctx
            .shared
            .stores
            .accounts()
            .annotations(self.account(), &scope)
            .await
            .map_err(Refusal::from)?;
        if let Some(attribute) = special_use {
            stored.push((SPECIAL_USE_ENTRY.into(), attribute.as_bytes().to_vec()));
        }
        let mut found: Vec<(String, Option<&[u8]>)> = Vec::new();
        let mut longest_left_out = 0;
        for asked in entries {
            let asked = asked.to_ascii_lowercase();
            let below = format!("{asked}/");
            let mut exact = false;
            for (entry, value) in &stored {
                let wanted = if *entry == asked {
                    exact = true;
                    true
                } else if let Some(rest) = entry.strip_prefix(&below) {
                    match depth {
                        MetadataDepth::Zero => false,
                        MetadataDepth::One => !rest.contains('/'),
                        MetadataDepth::Infinity => true,
                    }
                } else {
                    false
                };
                if !wanted || found.iter().any(|(e, _)| e == entry) {
                    continue;
                }
                if max_size.is_some_and(|m| value.len() > m as usize) {
                    longest_left_out = longest_left_out.max(value.len());
                    continue;
                }
                found.push((entry.clone(), Some(value)));
            }
            if !exact && !found.iter().any(|(e, _)| *e == asked) && depth == MetadataDepth::Zero {
                found.push((asked, None));
            }
        }
        if !found.is_empty() {
            let mut out = b"* METADATA ".to_vec();
            if scope.is_empty() {
                out.extend_from_slice(b"\"\"");
            } else {
                let name = self.mailbox_name(raw)?;
                self.write_mailbox(&mut out, name.as_str());
            }
            out.extend_from_slice(b" (");
            for (i, (entry, value)) in found.iter().enumerate() {
                if i > 0 {
                    out.push(b' ');
                }
                // An atom where it can be, as RFC 5464's examples write it.
                if entry
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && !b"(){\"\\%*".contains(&b))
                {
                    out.extend_from_slice(entry.as_bytes());
                } else {
                    wire::string(&mut out, entry.as_bytes(), false);
                }
                out.push(b' ');
                match value {
                    None => out.extend_from_slice(b"NIL"),
                    Some(v) if v.contains(&0) => {
                        let _ = write!(Lossy(&mut out), "~{{{}}}\r\n", v.len());
                        out.extend_from_slice(v);
                    }
                    Some(v) => wire::string(&mut out, v, self.enabled.utf8),
                }
            }
            out.extend_from_slice(b")\r\n");
            conn.out().extend_from_slice(&out);
        }
        if longest_left_out > 0 {
            return Ok(format!(
                "[METADATA LONGENTRIES {longest_left_out}] GETMETADATA completed"
            ));
        }
        Ok("GETMETADATA completed".into())
    }

    pub(in crate::imap) async fn set_metadata(
        &mut self,
        raw: &[u8],
        entries: &[(String, Option<Vec<u8>>)],
    ) -> Reply {
        let (scope, _) = self.metadata_scope(raw).await?;
        for (entry, value) in entries {
            if entry.eq_ignore_ascii_case(SPECIAL_USE_ENTRY) {
                return Err(no(
                    "[CANNOT] /private/specialuse is set when the mailbox is created",
                ));
            }
            if value
                .as_ref()
                .is_some_and(|v| v.len() > MAX_ANNOTATION_SIZE)
            {
                return Err(no(format!(
                    "[METADATA MAXSIZE {MAX_ANNOTATION_SIZE}] the value of {entry} is too long"
                )));
            }
        }
        match self
            .ctx
            .shared
            .stores
            .accounts()
            .set_annotations(self.account(), &scope, entries)
            .await
        {
            Ok(()) => Ok("SETMETADATA completed".into()),
            Err(stratus_core::accounts::AccountError::TooManyAnnotations) => Err(no(format!(
                "[METADATA TOOMANY] a mailbox may have at most {MAX_ANNOTATIONS} entries"
            ))),
            Err(e) => Err(e.into()),
        }
    }
}
