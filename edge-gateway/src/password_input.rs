//! Getting a new password from the operator: one line from stdin
//! (`--password-stdin`, for scripts) or two prompts on the terminal.
//!
//! Only the line terminator is stripped from a piped password: spaces are
//! legitimate password characters, and silently trimming them would store a
//! password the user never typed. The password itself never reaches a log,
//! an error message or stdout.

use std::io::{self, BufRead, IsTerminal, Read};

/// Longest line read from stdin. Longer than any password core accepts
/// (1024 bytes), so an over-long password gets core's clear message rather
/// than a truncated hash.
const MAX_LINE: u64 = 4096;

#[derive(Debug, thiserror::Error)]
pub enum PasswordInputError {
    #[error(
        "no password on stdin: pipe the password as one line, e.g. `printf '%s\\n' \"$PW\" | stratus ... --password-stdin`"
    )]
    NoInput,
    #[error("the password line on stdin is empty")]
    EmptyLine,
    #[error("the password on stdin is not valid UTF-8")]
    NotUtf8,
    #[error("the password line on stdin is longer than {MAX_LINE} bytes")]
    TooLong,
    #[error(
        "stdin is not a terminal, so there is nobody to prompt: pipe the password and pass --password-stdin"
    )]
    NotATerminal,
    #[error("the two passwords do not match")]
    Mismatch,
    #[error("cannot read the password: {0}")]
    Io(#[from] io::Error),
}

impl PasswordInputError {
    /// Whether the operator called the command the wrong way (exit code 2)
    /// rather than the input being refused (exit code 1).
    pub fn is_usage(&self) -> bool {
        matches!(self, PasswordInputError::NotATerminal)
    }
}

/// Reads exactly one line and strips its terminator (`\n` or `\r\n`) and
/// nothing else. A last line without a terminator counts as a line.
pub fn read_password_line(mut input: impl BufRead) -> Result<String, PasswordInputError> {
    let mut line = Vec::new();
    let read = Read::take(&mut input, MAX_LINE + 1).read_until(b'\n', &mut line)?;
    if read == 0 {
        return Err(PasswordInputError::NoInput);
    }
    if line.last() == Some(&b'\n') {
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
    } else if read as u64 > MAX_LINE {
        return Err(PasswordInputError::TooLong);
    }
    if line.is_empty() {
        return Err(PasswordInputError::EmptyLine);
    }
    String::from_utf8(line).map_err(|_| PasswordInputError::NotUtf8)
}

/// Asks twice on the terminal, without echo.
pub fn prompt_new_password(account: &str) -> Result<String, PasswordInputError> {
    if !io::stdin().is_terminal() {
        return Err(PasswordInputError::NotATerminal);
    }
    let first = rpassword::prompt_password(format!("New password for {account}: "))?;
    let second = rpassword::prompt_password("Retype the password: ")?;
    if first != second {
        return Err(PasswordInputError::Mismatch);
    }
    Ok(first)
}

/// The new password from stdin (one line) or the terminal, as the flag says.
pub fn new_password(account: &str, from_stdin: bool) -> Result<String, PasswordInputError> {
    if from_stdin {
        read_password_line(io::stdin().lock())
    } else {
        prompt_new_password(account)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(input: &[u8]) -> Result<String, PasswordInputError> {
        read_password_line(input)
    }

    #[test]
    fn strips_only_the_line_terminator() {
        assert_eq!(read(b"pw\n").unwrap(), "pw");
        assert_eq!(read(b"pw\r\n").unwrap(), "pw");
        assert_eq!(read(b"pw").unwrap(), "pw", "a last line without terminator");
        assert_eq!(read(b" pw \n").unwrap(), " pw ");
        assert_eq!(read(b"\tpw\t\n").unwrap(), "\tpw\t");
        assert_eq!(read("pässwörd\n".as_bytes()).unwrap(), "pässwörd");
    }

    #[test]
    fn reads_exactly_one_line() {
        let mut input: &[u8] = b"first\nsecond\n";
        assert_eq!(read_password_line(&mut input).unwrap(), "first");
        assert_eq!(input, b"second\n", "the next line is left unread");
    }

    #[test]
    fn a_lone_carriage_return_is_kept_for_core_to_refuse() {
        // "pw\r" at EOF is not a CRLF terminator; core's hash() refuses the
        // control character with a message about stray line endings.
        assert_eq!(read(b"pw\r").unwrap(), "pw\r");
        assert_eq!(read(b"pw\r\r\n").unwrap(), "pw\r");
    }

    #[test]
    fn refuses_empty_and_missing_input() {
        assert!(matches!(read(b"\n"), Err(PasswordInputError::EmptyLine)));
        assert!(matches!(read(b"\r\n"), Err(PasswordInputError::EmptyLine)));
        assert!(matches!(
            read(b"\nsecret\n"),
            Err(PasswordInputError::EmptyLine)
        ));
        assert!(matches!(read(b""), Err(PasswordInputError::NoInput)));
        assert!(matches!(
            read(b"\xff\xfe\n"),
            Err(PasswordInputError::NotUtf8)
        ));
    }

    #[test]
    fn refuses_an_endless_line() {
        let long = vec![b'a'; MAX_LINE as usize + 10];
        assert!(matches!(read(&long), Err(PasswordInputError::TooLong)));
        let mut ok = vec![b'a'; MAX_LINE as usize - 1];
        ok.push(b'\n');
        assert_eq!(read(&ok).unwrap().len(), MAX_LINE as usize - 1);
    }

    #[test]
    fn errors_never_echo_the_input() {
        for input in [&b"\xffsecret\n"[..], &b"\n"[..]] {
            let message = read(input).unwrap_err().to_string();
            assert!(!message.contains("secret"), "{message}");
        }
    }
}
