//! The compliance archive's layout: what one archived message is
//! ([`ArchiveEntry`]) and where it is kept, so that the archive stage that
//! writes it and the search, hold and export that will read it agree.
//!
//! - Journal objects live at `journal/<yyyy>/<mm>/<dd>/<queue id>` in the
//!   archive store (Object Lock on AWS, so a copy cannot be altered once
//!   written): [`journal_key`].
//! - Index entries at `archive#<yyyy-mm>` | `<received at, 12 digits>#<queue
//!   id>`: [`entry_key`]. One partition per month ([`month_partition`]),
//!   sorted by arrival, so a date range is a range query per month.

use serde::{Deserialize, Serialize};

use crate::address::Address;
use crate::ids::{BlobKey, IdError, QueueId};
use crate::job::{Accepted, Origin};
use crate::ports::Key;

/// One archived message, as compliance searches see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveEntry {
    pub queue_id: QueueId,
    pub received_at: i64,
    pub origin: Origin,
    pub mail_from: Option<Address>,
    pub recipients: Vec<Address>,
    pub from: Option<String>,
    pub subject: Option<String>,
    pub message_id: Option<String>,
    pub size: u64,
    /// The journal object.
    pub blob: BlobKey,
}

/// Civil date (year, month, day) of a Unix time, in UTC.
pub fn civil_date(unix: i64) -> (i64, u32, u32) {
    crate::time::civil_from_day(unix.div_euclid(86_400))
}

/// Where the journal copy of `message` is kept in the archive store.
pub fn journal_key(message: &Accepted) -> Result<BlobKey, IdError> {
    let (y, m, d) = civil_date(message.received_at);
    BlobKey::parse(&format!(
        "journal/{y:04}/{m:02}/{d:02}/{}",
        message.queue_id
    ))
}

/// The index partition of the messages received in one month (UTC).
pub fn month_partition(year: i64, month: u32) -> String {
    format!("archive#{year:04}-{month:02}")
}

/// Where the index entry of `message` is kept.
pub fn entry_key(message: &Accepted) -> Key {
    let (y, m, _) = civil_date(message.received_at);
    Key::new(
        month_partition(y, m),
        format!("{:012}#{}", message.received_at, message.queue_id),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_date(0), (1970, 1, 1));
        assert_eq!(civil_date(951_782_400), (2000, 2, 29));
        assert_eq!(civil_date(1_751_356_800), (2025, 7, 1));
        assert_eq!(civil_date(-1), (1969, 12, 31));
    }

    #[test]
    fn months_partition_the_index() {
        assert_eq!(month_partition(2025, 7), "archive#2025-07");
        assert_eq!(month_partition(999, 12), "archive#0999-12");
    }
}
