//! What a server process tree costs, read from /proc: CPU time and proportional memory (PSS).

use std::fs;

/// Clock ticks per second of the CPU times in /proc (USER_HZ, 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;

/// The process `root` and every live descendant.
pub fn process_tree(root: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    if let Ok(entries) = fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
            if let Some(stat) = read_stat(pid) {
                parents.push((pid, stat.ppid));
            }
        }
    }
    let mut tree = vec![root];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        tree.extend(parents.iter().filter(|(_, ppid)| *ppid == parent).map(|(pid, _)| *pid));
        i += 1;
    }
    tree
}

/// CPU seconds used by the tree so far: its live threads to the nanosecond (schedstat), plus
/// children already reaped (clock ticks, all /proc keeps of them).
pub fn cpu_seconds(root: u32) -> f64 {
    process_tree(root)
        .into_iter()
        .map(|pid| {
            let reaped = read_stat(pid).map_or(0.0, |s| s.children_ticks as f64 / TICKS_PER_SECOND);
            let live = thread_cpu_nanos(pid).map_or_else(
                || read_stat(pid).map_or(0.0, |s| s.own_ticks as f64 / TICKS_PER_SECOND),
                |ns| ns as f64 / 1e9,
            );
            live + reaped
        })
        .sum()
}

/// Nanoseconds on CPU of every thread of `pid` (the first field of each task's schedstat).
fn thread_cpu_nanos(pid: u32) -> Option<u64> {
    let mut total = 0;
    for task in fs::read_dir(format!("/proc/{pid}/task")).ok()?.flatten() {
        let text = fs::read_to_string(task.path().join("schedstat")).ok()?;
        total += text.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(total)
}

/// Proportional set size of the tree in bytes (shared pages split between their users).
pub fn pss_bytes(root: u32) -> u64 {
    process_tree(root).into_iter().filter_map(|pid| smaps_rollup_kib(pid, "Pss:")).sum::<u64>() * 1024
}

struct Stat {
    ppid: u32,
    /// utime + stime.
    own_ticks: u64,
    /// cutime + cstime: reaped children.
    children_ticks: u64,
}

fn read_stat(pid: u32) -> Option<Stat> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces; fields follow the last ')'.
    let fields: Vec<&str> = text.get(text.rfind(')')? + 2..)?.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
    let ppid = u32::try_from(field(4)?).ok()?;
    Some(Stat { ppid, own_ticks: field(14)? + field(15)?, children_ticks: field(16)? + field(17)? })
}

fn smaps_rollup_kib(pid: u32, key: &str) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    let line = text.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].trim().trim_end_matches("kB").trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        assert!(process_tree(me).contains(&me));
        assert!(pss_bytes(me) > 0);
        assert!(cpu_seconds(me) >= 0.0);
    }
}
