//! The message bytes of DATA and BDAT, without I/O: the session feeds what
//! it read, these types say how much they consumed and when the message
//! ended.
//!
//! DATA ([`DotReader`]) is where SMTP smuggling lives (CVE-2023-51764 and
//! its family): a receiver that ends a message on anything but
//! `<CRLF>.<CRLF>` — `<LF>.<LF>`, `<CR>.<CR>`, `<CRLF>.<LF>`, ... — can be
//! made to see a second, forged message that the sending server passed on
//! as part of the first. Here only `<CRLF>.<CRLF>` ends the data, a line
//! starts only after `<CRLF>`, and a bare LF or bare CR anywhere marks the
//! whole message for refusal (as Postfix's `smtpd_forbid_bare_newline`
//! does), so nothing in it is ever read as commands or as a message.
//!
//! BDAT chunks ([`Chunk`]) are counted, not scanned: their framing cannot
//! be confused, and binary content is what CHUNKING is for.

/// Where the [`DotReader`] is within a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// After `<CRLF>` (or at the very start): a `.` here is special.
    LineStart,
    /// A `.` at the start of a line.
    Dot,
    /// `.<CR>` at the start of a line: `<LF>` ends the data.
    DotCr,
    /// Inside a line.
    Mid,
    /// After a `<CR>` inside a line (not yet written out).
    Cr,
}

/// Receives the data of a DATA command: dot-unstuffing (RFC 5321 §4.5.2),
/// the end marker, bare line endings and the size cap.
#[derive(Debug)]
pub struct DotReader {
    state: State,
    cap: u64,
    size: u64,
    bare_line_ending: bool,
    over_cap: bool,
}

impl DotReader {
    /// A reader that keeps at most `cap` bytes of message.
    pub fn new(cap: u64) -> DotReader {
        DotReader {
            state: State::LineStart,
            cap,
            size: 0,
            bare_line_ending: false,
            over_cap: false,
        }
    }

    /// Bytes of message seen so far (after unstuffing), kept or not.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// A bare CR or bare LF was seen: the message must be refused.
    pub fn saw_bare_line_ending(&self) -> bool {
        self.bare_line_ending
    }

    /// The message outgrew the cap: it must be refused.
    pub fn over_cap(&self) -> bool {
        self.over_cap
    }

    /// Whether the message is still worth keeping.
    fn keeping(&self) -> bool {
        !self.bare_line_ending && !self.over_cap
    }

    /// Consumes bytes of `input`, appending the message bytes to `out` while
    /// the message is still acceptable. Returns how many bytes were consumed
    /// and whether the end marker was among them; bytes after the marker
    /// are left unconsumed (they are the client's next commands). Once the
    /// message is bound to be refused, `out` is emptied and stays empty.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> (usize, bool) {
        let mut i = 0;
        while i < input.len() {
            if self.state == State::Mid {
                // Fast path: copy up to the next CR or LF in one go.
                let rest = &input[i..];
                let n = rest
                    .iter()
                    .position(|&b| b == b'\r' || b == b'\n')
                    .unwrap_or(rest.len());
                self.emit(&rest[..n], out);
                i += n;
                if i == input.len() {
                    break;
                }
            }
            let b = input[i];
            i += 1;
            if self.step(b, out) {
                return (i, true);
            }
        }
        (i, false)
    }

    /// One byte through the state machine; true at the end marker.
    fn step(&mut self, b: u8, out: &mut Vec<u8>) -> bool {
        match self.state {
            State::LineStart => match b {
                b'.' => self.state = State::Dot,
                _ => self.inside_line(b, out),
            },
            // The leading dot is dropped; what follows is ordinary text.
            State::Dot => match b {
                b'\r' => self.state = State::DotCr,
                _ => self.inside_line(b, out),
            },
            State::DotCr => {
                if b == b'\n' {
                    return true;
                }
                // `.<CR>` not followed by LF: that CR was bare.
                self.bare(out);
                self.emit(b"\r", out);
                self.inside_line(b, out);
            }
            State::Mid => self.inside_line(b, out),
            State::Cr => match b {
                b'\n' => {
                    self.emit(b"\r\n", out);
                    self.state = State::LineStart;
                }
                b'\r' => {
                    self.bare(out);
                    self.emit(b"\r", out);
                }
                _ => {
                    self.bare(out);
                    self.emit(b"\r", out);
                    self.emit(&[b], out);
                    self.state = State::Mid;
                }
            },
        }
        false
    }

    /// A byte inside a line: CR waits for its LF, a lone LF is bare.
    fn inside_line(&mut self, b: u8, out: &mut Vec<u8>) {
        match b {
            b'\r' => self.state = State::Cr,
            b'\n' => {
                self.bare(out);
                self.emit(b"\n", out);
                self.state = State::Mid;
            }
            _ => {
                self.emit(&[b], out);
                self.state = State::Mid;
            }
        }
    }

    fn bare(&mut self, out: &mut Vec<u8>) {
        if !self.bare_line_ending {
            self.bare_line_ending = true;
            *out = Vec::new();
        }
    }

    fn emit(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        self.size += bytes.len() as u64;
        if !self.keeping() {
            return;
        }
        if self.size > self.cap {
            self.over_cap = true;
            *out = Vec::new();
            return;
        }
        out.extend_from_slice(bytes);
    }
}

/// The rest of a BDAT chunk (RFC 3030): exactly `left` more bytes.
#[derive(Debug)]
pub struct Chunk {
    left: u64,
}

impl Chunk {
    pub fn new(size: u64) -> Chunk {
        Chunk { left: size }
    }

    pub fn left(&self) -> u64 {
        self.left
    }

    /// Takes what belongs to the chunk from `input` (appending it to `out`
    /// when given); returns how many bytes were taken.
    pub fn feed(&mut self, input: &[u8], out: Option<&mut Vec<u8>>) -> usize {
        let n = usize::try_from(self.left).map_or(input.len(), |left| left.min(input.len()));
        if let Some(out) = out {
            out.extend_from_slice(&input[..n]);
        }
        self.left -= n as u64;
        n
    }
}

/// How many `Received:` fields the header section of `message` holds
/// (RFC 5321 §6.3 counts them to detect loops). Continuation lines and the
/// body are not counted.
pub fn count_received(message: &[u8]) -> usize {
    let mut count = 0;
    for line in message.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = line[..colon].trim_ascii_end();
        if name.eq_ignore_ascii_case(b"received") {
            count += 1;
        }
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` whole and one byte at a time; both must agree.
    /// Returns (message, consumed, ended, bare, over the cap).
    fn read(input: &[u8], cap: u64) -> (Vec<u8>, usize, bool, bool, bool) {
        let mut r = DotReader::new(cap);
        let mut out = Vec::new();
        let (used, done) = r.feed(input, &mut out);
        let whole = (out, used, done, r.saw_bare_line_ending(), r.over_cap());

        let mut r = DotReader::new(cap);
        let mut out = Vec::new();
        let mut used = 0;
        let mut done = false;
        for b in input {
            let (n, d) = r.feed(std::slice::from_ref(b), &mut out);
            used += n;
            if d {
                done = true;
                break;
            }
        }
        let bytewise = (out, used, done, r.saw_bare_line_ending(), r.over_cap());
        assert_eq!(whole, bytewise, "{:?}", String::from_utf8_lossy(input));
        whole
    }

    #[test]
    fn ends_only_at_crlf_dot_crlf_and_unstuffs() {
        let cases: &[(&[u8], &[u8], usize)] = &[
            (b".\r\n", b"", 3),
            (b"\r\n.\r\n", b"\r\n", 5),
            (b"a\r\n.\r\nQUIT\r\n", b"a\r\n", 6),
            (b"..\r\n.\r\n", b".\r\n", 7),
            (b"...x\r\n.\r\n", b"..x\r\n", 9),
            (b"a.\r\n.b\r\n.\r\n", b"a.\r\nb\r\n", 11),
            (b"line\r\n..\r\n.\r\n", b"line\r\n.\r\n", 13),
            (b"8bit \xc3\xa9\x00\r\n.\r\n", b"8bit \xc3\xa9\x00\r\n", 13),
        ];
        for (input, message, consumed) in cases {
            let (out, used, done, bare, over) = read(input, 1 << 20);
            assert!(done, "{:?}", String::from_utf8_lossy(input));
            assert!(!bare && !over);
            assert_eq!(&out[..], *message, "{:?}", String::from_utf8_lossy(input));
            assert_eq!(used, *consumed);
        }
    }

    #[test]
    fn smuggling_markers_do_not_end_the_data_and_are_refused() {
        for marker in [
            &b"\n.\n"[..],
            b"\r.\r",
            b"\r\n.\n",
            b"\n.\r\n",
            b"\r\n.\r",
            b"\r.\r\n",
            b"\n.\r",
            b"\r\n.\r\r\n",
        ] {
            let mut input = b"Subject: x\r\n\r\nhello".to_vec();
            input.extend_from_slice(marker);
            input.extend_from_slice(
                b"MAIL FROM:<evil@attacker.example>\r\nRCPT TO:<x@y>\r\nDATA\r\n",
            );
            let (out, _, done, bare, _) = read(&input, 1 << 20);
            assert!(!done, "{marker:?} ended the data");
            assert!(bare, "{marker:?} not seen as bare");
            assert!(out.is_empty(), "nothing kept of a refused message");

            // Only a real <CRLF>.<CRLF> ends it, however much follows.
            input.extend_from_slice(b"smuggled\r\n.\r\nQUIT\r\n");
            let (_, used, done, bare, _) = read(&input, 1 << 20);
            assert!(done && bare);
            assert_eq!(&input[used..], b"QUIT\r\n", "{marker:?}");
        }
    }

    #[test]
    fn bare_endings_anywhere_are_seen() {
        for input in [
            &b"a\nb\r\n.\r\n"[..],
            b"a\rb\r\n.\r\n",
            b"\n.\r\n.\r\n",
            b"a\r\r\n.\r\n",
            b".\n\r\n.\r\n",
            b".\rx\r\n.\r\n",
        ] {
            let (_, _, done, bare, _) = read(input, 1 << 20);
            assert!(done && bare, "{:?}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn the_cap_counts_unstuffed_bytes_and_stops_keeping() {
        let (out, _, done, _, over) = read(b"12345\r\n.\r\n", 7);
        assert!(done && !over);
        assert_eq!(out, b"12345\r\n");
        let (out, _, done, _, over) = read(b"123456\r\n.\r\n", 7);
        assert!(done && over);
        assert!(out.is_empty());
        let (_, _, _, _, over) = read(b"..2345\r\n.\r\n", 7);
        assert!(!over, "the stuffed dot does not count");
    }

    #[test]
    fn chunks_take_exactly_their_size() {
        let mut c = Chunk::new(5);
        let mut out = Vec::new();
        assert_eq!(c.feed(b"abc", Some(&mut out)), 3);
        assert_eq!(c.feed(b"de\r\n.\r\nQUIT", Some(&mut out)), 2);
        assert_eq!(c.left(), 0);
        assert_eq!(out, b"abcde");
        let mut c = Chunk::new(4);
        assert_eq!(c.feed(b"\n.\n\rxx", None), 4);
    }

    #[test]
    fn received_fields_are_counted_in_the_header_section_only() {
        let m = b"Received: from a\r\n\tby b\r\nreceived : from c\r\nSubject: x\r\nRECEIVED:y\r\n\r\nReceived: in the body\r\n";
        assert_eq!(count_received(m), 3);
        assert_eq!(count_received(b""), 0);
        assert_eq!(
            count_received(b"Received: x\nReceived: y\n\nReceived: z\n"),
            2
        );
        assert_eq!(count_received(b"X-Received: a\r\n"), 0);
    }
}
