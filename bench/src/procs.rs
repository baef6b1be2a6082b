//! Memory of a process tree from /proc: RSS (what the issue asks for) and
//! PSS (shared pages divided among the processes sharing them, which is
//! fairer to a server that forks one process per connection).

use std::collections::HashMap;
use std::fs;

/// `pid` and all its descendants.
pub fn tree(pid: u32) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    if let Ok(dir) = fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if let Some(pp) = ppid(p) {
                children.entry(pp).or_default().push(p);
            }
        }
    }
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() {
        if let Some(c) = children.get(&out[i]) {
            out.extend(c);
        }
        i += 1;
    }
    out
}

fn ppid(pid: u32) -> Option<u32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces.
    let after = &stat[stat.rfind(')')? + 2..];
    after.split(' ').nth(1)?.parse().ok()
}

/// (processes, RSS KiB, PSS KiB) summed over the tree of `pid`.
pub fn memory(pid: u32) -> (usize, u64, u64) {
    let pids = tree(pid);
    let (mut rss, mut pss, mut n) = (0, 0, 0);
    for p in pids {
        let Ok(text) = fs::read_to_string(format!("/proc/{p}/smaps_rollup")) else {
            continue;
        };
        n += 1;
        for line in text.lines() {
            let mut it = line.split_ascii_whitespace();
            let (Some(key), Some(v)) = (it.next(), it.next()) else {
                continue;
            };
            let v: u64 = v.parse().unwrap_or(0);
            match key {
                "Rss:" => rss += v,
                "Pss:" => pss += v,
                _ => {}
            }
        }
    }
    (n, rss, pss)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_memory() {
        let (n, rss, pss) = memory(std::process::id());
        assert!(n >= 1 && rss > 0 && pss > 0);
    }
}
