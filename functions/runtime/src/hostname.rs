//! The machine's host name, the default for `STRATUS_HOSTNAME`.

use crate::config::valid_hostname;

/// The kernel's host name (`/proc/sys/kernel/hostname`, else
/// `gethostname(2)`), or `localhost` when neither gives a usable name.
pub fn machine_hostname() -> String {
    let from_proc = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string());
    from_proc
        .filter(|n| valid_hostname(n))
        .or_else(|| libc_hostname().filter(|n| valid_hostname(n)))
        .unwrap_or_else(|| "localhost".to_string())
}

#[allow(unsafe_code)]
fn libc_hostname() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: the pointer and length describe `buf`, which outlives the
    // call; gethostname writes at most `buf.len()` bytes into it.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return None;
    }
    // POSIX leaves termination unspecified on truncation: stop at the first
    // NUL or the buffer's end, whichever comes first.
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8(buf[..end].to_vec()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_machine_has_a_usable_name() {
        assert!(valid_hostname(&machine_hostname()));
        if let Some(name) = libc_hostname() {
            assert!(!name.is_empty());
        }
    }
}
