//! A stream that deflates what it writes and inflates what it reads (raw
//! DEFLATE, RFC 1951, no zlib header), for IMAP COMPRESS=DEFLATE
//! (RFC 4978). Every flush ends with a sync flush, so the peer can inflate
//! everything written so far without waiting for more.
//!
//! flate2 does the compression; this wrapper only adapts it to tokio's
//! `AsyncRead`/`AsyncWrite` (no well-kept crate in our tree does that for
//! raw deflate without pulling a second compression stack).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

const CHUNK: usize = 16 * 1024;
/// Most output one input byte may inflate to before we stop asking: a
/// guard against decompression bombs filling memory in one read.
const MAX_INFLATE_PER_READ: usize = 64 * 1024;

#[derive(Debug)]
pub struct Deflate<S> {
    inner: S,
    compress: Compress,
    decompress: Decompress,
    /// Compressed input read and not yet inflated.
    input: Vec<u8>,
    input_pos: usize,
    /// Deflated output not yet written to `inner`.
    output: Vec<u8>,
    output_pos: usize,
    /// Data went into the compressor since the last sync flush.
    unflushed: bool,
    /// The inflater may hold output it had no room for.
    inflating: bool,
    eof: bool,
}

impl<S> Deflate<S> {
    /// Wraps `inner`; `pending` is compressed input already read from it.
    pub fn new(inner: S, pending: Vec<u8>) -> Deflate<S> {
        Deflate {
            inner,
            compress: Compress::new(Compression::default(), false),
            decompress: Decompress::new(false),
            input: pending,
            input_pos: 0,
            output: Vec::new(),
            output_pos: 0,
            unflushed: false,
            inflating: false,
            eof: false,
        }
    }

    /// Deflates `data` (with `flush`) into the output buffer.
    fn deflate(&mut self, data: &[u8], flush: FlushCompress) -> io::Result<()> {
        let mut consumed = 0;
        loop {
            if self.output.capacity() - self.output.len() < CHUNK {
                self.output.reserve(CHUNK);
            }
            let before_in = self.compress.total_in();
            let before_out = self.compress.total_out();
            self.compress
                .compress_vec(&data[consumed..], &mut self.output, flush)
                .map_err(io::Error::other)?;
            consumed += (self.compress.total_in() - before_in) as usize;
            let produced = self.compress.total_out() - before_out;
            let room_left = self.output.capacity() > self.output.len();
            if consumed >= data.len() && (room_left || produced == 0) {
                return Ok(());
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> Deflate<S> {
    /// Writes the deflated output out to the inner stream.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.output_pos < self.output.len() {
            let n =
                ready!(Pin::new(&mut self.inner).poll_write(cx, &self.output[self.output_pos..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.output_pos += n;
        }
        self.output.clear();
        self.output_pos = 0;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Deflate<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if this.input_pos < this.input.len() || this.inflating {
                let room = buf.remaining().min(MAX_INFLATE_PER_READ);
                let mut out = vec![0u8; room];
                let before_in = this.decompress.total_in();
                let before_out = this.decompress.total_out();
                let status = this
                    .decompress
                    .decompress(
                        &this.input[this.input_pos..],
                        &mut out,
                        FlushDecompress::Sync,
                    )
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                this.input_pos += (this.decompress.total_in() - before_in) as usize;
                let produced = (this.decompress.total_out() - before_out) as usize;
                // A full buffer may leave output inside the inflater.
                this.inflating = produced == room && room > 0;
                if this.input_pos >= this.input.len() {
                    this.input.clear();
                    this.input_pos = 0;
                }
                if produced > 0 {
                    buf.put_slice(&out[..produced]);
                    return Poll::Ready(Ok(()));
                }
                if status == Status::StreamEnd {
                    this.eof = true;
                }
                if (this.input_pos < this.input.len() || this.inflating)
                    && status != Status::StreamEnd
                {
                    // Consumed input without output (block headers): go on.
                    continue;
                }
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            let mut raw = [0u8; CHUNK];
            let mut raw_buf = ReadBuf::new(&mut raw);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut raw_buf))?;
            if raw_buf.filled().is_empty() {
                this.eof = true;
                return Poll::Ready(Ok(()));
            }
            this.input.extend_from_slice(raw_buf.filled());
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Deflate<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        // Keep the buffer bounded: write out what is pending first.
        if this.output.len() - this.output_pos >= CHUNK {
            ready!(this.poll_drain(cx))?;
        }
        this.deflate(data, FlushCompress::None)?;
        this.unflushed = true;
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.unflushed {
            // A sync flush ends what was written since the last one on a
            // byte boundary, so the peer can inflate all of it.
            this.deflate(&[], FlushCompress::Sync)?;
            this.unflushed = false;
        }
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.as_mut().poll_flush(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt, duplex};

    use super::*;

    #[tokio::test]
    async fn round_trip_with_sync_flushes_and_pending_input() {
        let (a, b) = duplex(1 << 16);
        let mut left = Deflate::new(a, Vec::new());
        left.write_all(b"* OK hello\r\n").await.unwrap();
        left.flush().await.unwrap();
        // The right side already read the first compressed bytes before
        // it started inflating (as a session does after COMPRESS).
        let (mut raw_b, mut b_after) = (b, Vec::new());
        let mut first = [0u8; 4];
        raw_b.read_exact(&mut first).await.unwrap();
        b_after.extend_from_slice(&first);
        let mut right = Deflate::new(raw_b, b_after);
        let mut got = [0u8; 12];
        right.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"* OK hello\r\n");

        let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        left.write_all(&big).await.unwrap();
        left.flush().await.unwrap();
        let mut back = vec![0u8; big.len()];
        right.read_exact(&mut back).await.unwrap();
        assert_eq!(back, big);
    }

    #[tokio::test]
    async fn small_reads_lose_nothing() {
        let (a, b) = duplex(1 << 16);
        let mut left = Deflate::new(a, Vec::new());
        let mut right = Deflate::new(b, Vec::new());
        let text: Vec<u8> = (0..10_000u32)
            .flat_map(|i| i.to_string().into_bytes())
            .collect();
        left.write_all(&text).await.unwrap();
        left.shutdown().await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 7];
        loop {
            let n = right.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got, text);
    }

    #[tokio::test]
    async fn garbage_input_is_an_error_not_a_panic() {
        let (a, mut b) = duplex(1024);
        let mut d = Deflate::new(a, Vec::new());
        b.write_all(&[0xff; 64]).await.unwrap();
        let mut buf = [0u8; 16];
        assert!(d.read(&mut buf).await.is_err());
    }
}
