//! The attachment policy: executable and script types (the extensions
//! listed in the rules file, Outlook's blocked list by default, and
//! executable content whatever its name), double extensions
//! (`invoice.pdf.exe`), names that contradict the content, and
//! encrypted archives; the same inside zip archives nested up to
//! [`MAX_DEPTH`] deep. Archive inspection is bounded in depth, entries and
//! decompressed bytes: an archive beyond a bound is a symbol
//! (`ATTACH_ARCHIVE_LIMIT`), never an outage.

use std::io::{Cursor, Read};

use crate::analysis::Attachment;
use crate::rules::Lists;

/// Nested archives are opened this deep.
pub const MAX_DEPTH: usize = 5;
/// At most this many archive entries are looked at per message.
pub const MAX_ENTRIES: usize = 1000;
/// At most this many bytes are decompressed per message.
pub const MAX_INFLATED: u64 = 64 * 1024 * 1024;

pub const SYMBOLS: &[(&str, &str)] = &[
    (
        "ATTACH_EXECUTABLE",
        "an executable or script attachment (or inside an archive)",
    ),
    (
        "ATTACH_DOUBLE_EXT",
        "a file name with a document extension before an executable one",
    ),
    (
        "ATTACH_TYPE_MISMATCH",
        "a file whose content contradicts its name",
    ),
    (
        "ATTACH_ENCRYPTED_ARCHIVE",
        "an encrypted archive, which no scanner can look into",
    ),
    (
        "ATTACH_ARCHIVE_LIMIT",
        "an archive too deep, too large or with too many entries to inspect",
    ),
];

/// What a file's first bytes say it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Executable,
    Zip,
    Pdf,
    Image,
    Office,
    Other,
}

fn sniff(data: &[u8]) -> Kind {
    match data {
        [b'M', b'Z', ..] | [0x7f, b'E', b'L', b'F', ..] | [0xcf, 0xfa, 0xed, 0xfe, ..] => {
            Kind::Executable
        }
        [b'P', b'K', 3, 4, ..] | [b'P', b'K', 5, 6, ..] => Kind::Zip,
        [b'%', b'P', b'D', b'F', ..] => Kind::Pdf,
        [0x89, b'P', b'N', b'G', ..] | [0xff, 0xd8, 0xff, ..] | [b'G', b'I', b'F', b'8', ..] => {
            Kind::Image
        }
        [0xd0, 0xcf, 0x11, 0xe0, ..] => Kind::Office,
        _ => Kind::Other,
    }
}

/// What an extension promises.
fn promised(ext: &str) -> Option<Kind> {
    Some(match ext {
        "pdf" => Kind::Pdf,
        "jpg" | "jpeg" | "png" | "gif" => Kind::Image,
        "zip" => Kind::Zip,
        "doc" | "xls" | "ppt" | "msg" => Kind::Office,
        "txt" | "csv" | "htm" | "html" | "rtf" => Kind::Other,
        _ => return None,
    })
}

/// Extensions people recognise as documents (before a second extension).
const DOCUMENT_EXTS: &[&str] = &[
    "pdf", "doc", "docx", "xls", "xlsx", "ppt", "pptx", "txt", "jpg", "jpeg", "png", "gif", "zip",
    "rtf", "csv", "htm", "html", "mp3", "mp4", "avi",
];

/// Bounds of archive inspection.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub depth: usize,
    pub entries: usize,
    pub inflated: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            depth: MAX_DEPTH,
            entries: MAX_ENTRIES,
            inflated: MAX_INFLATED,
        }
    }
}

#[derive(Debug, Default)]
struct Found {
    symbols: Vec<&'static str>,
    entries: usize,
    inflated: u64,
    limits: Limits,
}

impl Found {
    fn add(&mut self, symbol: &'static str) {
        if !self.symbols.contains(&symbol) {
            self.symbols.push(symbol);
        }
    }
}

/// The policy symbols `attachments` raise.
pub fn check(attachments: &[Attachment], lists: &Lists) -> Vec<&'static str> {
    check_with(attachments, lists, Limits::default())
}

/// [`check`] within `limits`.
pub fn check_with(attachments: &[Attachment], lists: &Lists, limits: Limits) -> Vec<&'static str> {
    let mut found = Found {
        limits,
        ..Found::default()
    };
    for a in attachments {
        file(
            a.name.as_deref().unwrap_or(""),
            &a.data,
            lists,
            0,
            &mut found,
        );
    }
    found.symbols
}

fn file(name: &str, data: &[u8], lists: &Lists, depth: usize, found: &mut Found) {
    let name = name
        .trim()
        .trim_end_matches(['.', ' '])
        .to_ascii_lowercase();
    let base = name.rsplit(['/', '\\']).next().unwrap_or(&name);
    let mut exts = base.rsplit('.');
    let last = exts.next().filter(|_| base.contains('.'));
    let before = exts.next().filter(|_| base.matches('.').count() >= 2);
    let blocked = |e: &str| {
        lists
            .blocked_extensions
            .iter()
            .any(|b| b.eq_ignore_ascii_case(e))
    };
    let kind = sniff(data);
    if last.is_some_and(blocked) || kind == Kind::Executable {
        found.add("ATTACH_EXECUTABLE");
    }
    if let (Some(last), Some(before)) = (last, before)
        && blocked(last)
        && DOCUMENT_EXTS.contains(&before)
    {
        found.add("ATTACH_DOUBLE_EXT");
    }
    if let Some(p) = last.and_then(promised)
        && kind != Kind::Other
        && p != kind
    {
        found.add("ATTACH_TYPE_MISMATCH");
    }
    if kind == Kind::Zip {
        archive(data, lists, depth + 1, found);
    }
}

fn archive(data: &[u8], lists: &Lists, depth: usize, found: &mut Found) {
    if depth > found.limits.depth {
        found.add("ATTACH_ARCHIVE_LIMIT");
        return;
    }
    let Ok(mut zip) = zip::ZipArchive::new(Cursor::new(data)) else {
        // Not a readable archive: the checks on its name already ran.
        return;
    };
    for i in 0..zip.len() {
        found.entries += 1;
        if found.entries > found.limits.entries {
            found.add("ATTACH_ARCHIVE_LIMIT");
            return;
        }
        let (name, encrypted, size) = match zip.by_index_raw(i) {
            Ok(entry) => (
                String::from_utf8_lossy(entry.name_raw()).into_owned(),
                entry.encrypted(),
                entry.size(),
            ),
            Err(_) => continue,
        };
        if encrypted {
            found.add("ATTACH_ENCRYPTED_ARCHIVE");
            file(&name, &[], lists, depth, found);
            continue;
        }
        let budget = found.limits.inflated.saturating_sub(found.inflated);
        // Every entry's first bytes tell its type; an entry that is an
        // archive itself (whatever its name) is read whole, within the
        // budget.
        let Ok(entry) = zip.by_index(i) else {
            // A compression method we do not inflate: nobody can say
            // what is inside.
            found.add("ATTACH_ARCHIVE_LIMIT");
            file(&name, &[], lists, depth, found);
            continue;
        };
        let mut reader = entry.take(budget.saturating_add(1));
        let mut content = vec![0u8; 512.min(budget as usize)];
        let mut filled = 0;
        while filled < content.len() {
            match reader.read(&mut content[filled..]) {
                Ok(0) | Err(_) => break,
                Ok(n) => filled += n,
            }
        }
        content.truncate(filled);
        if sniff(&content) == Kind::Zip {
            let _ = reader.read_to_end(&mut content);
        }
        found.inflated += content.len() as u64;
        if content.len() as u64 > budget || (sniff(&content) == Kind::Zip && size > budget) {
            found.add("ATTACH_ARCHIVE_LIMIT");
            content.truncate(512);
            file(&name, &content, lists, found.limits.depth, found);
            continue;
        }
        file(&name, &content, lists, depth, found);
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::Rules;

    fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        for (name, data) in entries {
            w.start_file(*name, zip::write::SimpleFileOptions::default())
                .unwrap();
            w.write_all(data).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    fn symbols(name: &str, data: &[u8]) -> Vec<&'static str> {
        symbols_within(name, data, Limits::default())
    }

    fn symbols_within(name: &str, data: &[u8], limits: Limits) -> Vec<&'static str> {
        let rules = Rules::shipped();
        let a = Attachment {
            name: Some(name.into()),
            content_type: "application/octet-stream".into(),
            data: data.to_vec(),
        };
        check_with(&[a], &rules.lists, limits)
    }

    #[test]
    fn names_and_contents() {
        assert_eq!(symbols("report.pdf", b"%PDF-1.4"), Vec::<&str>::new());
        assert_eq!(symbols("setup.EXE", b"MZ\x90\x00"), ["ATTACH_EXECUTABLE"]);
        assert_eq!(symbols("run.js", b"alert(1)"), ["ATTACH_EXECUTABLE"]);
        assert_eq!(
            symbols("invoice.pdf.exe", b"MZ"),
            ["ATTACH_EXECUTABLE", "ATTACH_DOUBLE_EXT"]
        );
        assert_eq!(
            symbols("photo.jpg", b"MZ\x90\x00"),
            ["ATTACH_EXECUTABLE", "ATTACH_TYPE_MISMATCH"]
        );
        assert_eq!(symbols("notes.txt", b"plain words"), Vec::<&str>::new());
    }

    #[test]
    fn inside_nested_archives() {
        let inner = zip_of(&[("tool.scr", b"MZ")]);
        let middle = zip_of(&[("inner.zip", &inner)]);
        let outer = zip_of(&[("readme.txt", b"hi"), ("middle.zip", &middle)]);
        assert_eq!(symbols("files.zip", &outer), ["ATTACH_EXECUTABLE"]);
        assert_eq!(
            symbols("clean.zip", &zip_of(&[("a.txt", b"x")])),
            Vec::<&str>::new()
        );
        // Six levels: the innermost is past the bound.
        let mut z = zip_of(&[("a.txt", b"x")]);
        for _ in 0..6 {
            z = zip_of(&[("next.zip", &z)]);
        }
        assert_eq!(symbols("deep.zip", &z), ["ATTACH_ARCHIVE_LIMIT"]);
    }

    #[test]
    fn an_archive_by_any_name_is_opened() {
        let inner = zip_of(&[("evil.exe", b"MZ\x90\x00")]);
        let outer = zip_of(&[("data.bin", &inner)]);
        assert!(symbols("files.zip", &outer).contains(&"ATTACH_EXECUTABLE"));
    }

    #[test]
    fn zip_bomb_is_a_verdict() {
        // A nested archive that inflates past the budget is a symbol and
        // is read no further than the budget.
        let limits = Limits {
            inflated: 64 * 1024,
            ..Limits::default()
        };
        let zeros = vec![0u8; 1024 * 1024];
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let stored = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        w.start_file("zeros.bin", stored).unwrap();
        w.write_all(&zeros).unwrap();
        let big_inner = w.finish().unwrap().into_inner();
        let bomb = zip_of(&[("inner.dat", &big_inner)]);
        assert!(bomb.len() < 16 * 1024, "{}", bomb.len());
        assert_eq!(
            symbols_within("bomb.zip", &bomb, limits),
            ["ATTACH_ARCHIVE_LIMIT"]
        );
        // Within the default budget the same archive is simply inspected.
        assert_eq!(symbols("bomb.zip", &bomb), Vec::<&str>::new());
        let many: Vec<(String, Vec<u8>)> = (0..1200)
            .map(|i| (format!("f{i}.txt"), vec![b'x']))
            .collect();
        let refs: Vec<(&str, &[u8])> = many
            .iter()
            .map(|(n, d)| (n.as_str(), d.as_slice()))
            .collect();
        assert_eq!(
            symbols("many.zip", &zip_of(&refs)),
            ["ATTACH_ARCHIVE_LIMIT"]
        );
    }

    #[test]
    fn encrypted_entries() {
        // The zip crate writes no encrypted entries; set the "encrypted"
        // bit (general purpose flag bit 0) in the local and central
        // headers of a stored one, which is what a reader looks at.
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        w.start_file("doc.txt", opts).unwrap();
        w.write_all(b"hidden").unwrap();
        let mut data = w.finish().unwrap().into_inner();
        data[6] |= 1;
        let central = data.windows(4).position(|w| w == b"PK\x01\x02").unwrap();
        data[central + 8] |= 1;
        assert_eq!(symbols("locked.zip", &data), ["ATTACH_ENCRYPTED_ARCHIVE"]);
    }

    #[test]
    fn garbage_archives_end() {
        for data in [
            &b"PK\x03\x04"[..],
            b"PK\x05\x06\0\0\0\0\xff\xff\xff\xff",
            b"PK",
        ] {
            let _ = symbols("x.zip", data);
        }
    }
}
