//! CPU time (user + system, all threads) of processes, read from `/proc`.
//!
//! Gives "CPU per call" figures for each process on the path, which unlike
//! throughput do not depend on how the machine's cores were shared between
//! the load tool, the gateway and the upstream. Linux only; elsewhere the
//! figures are simply absent.

/// Linux reports `utime`/`stime` in USER_HZ ticks, 100 on every mainstream
/// architecture; reading `sysconf` would need libc for no practical gain.
const TICKS_PER_SECOND: f64 = 100.0;

/// CPU seconds used so far by this process.
pub fn own_cpu_seconds() -> Option<f64> {
    parse_stat(&std::fs::read_to_string("/proc/self/stat").ok()?)
}

/// CPU seconds used so far by `pid` and its live descendants: a server that
/// forks workers (ContextForge does) is measured whole.
pub fn tree_cpu_seconds(pid: u32) -> Option<f64> {
    // Bounded depth: a process tree is shallow, and a pid reused mid-walk
    // must not send this into a long recursion.
    tree_cpu_seconds_bounded(pid, 8)
}

fn tree_cpu_seconds_bounded(pid: u32, depth: u32) -> Option<f64> {
    let own = parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)?;
    if depth == 0 {
        return Some(own);
    }
    let kids: f64 = children(pid)
        .into_iter()
        .filter_map(|c| tree_cpu_seconds_bounded(c, depth - 1))
        .sum();
    Some(own + kids)
}

/// Child pids of every thread of `pid` (empty where the kernel does not list them).
fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .filter_map(Result::ok)
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|s| {
            s.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

/// CPU seconds all processes on the machine have used so far (busy time
/// summed over all CPUs, from `/proc/stat`). Minus the processes of the
/// benchmark, it shows how much else ran: a noisy neighbour skews every figure.
pub fn machine_busy_seconds() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    parse_machine(&text)
}

fn parse_machine(text: &str) -> Option<f64> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal [guest guest_nice]; guest
    // time is already counted in user, and idle + iowait are not busy.
    let busy: u64 = [0, 1, 2, 5, 6, 7]
        .iter()
        .filter_map(|&i| ticks.get(i))
        .sum();
    Some(busy as f64 / TICKS_PER_SECOND)
}

fn parse_stat(text: &str) -> Option<f64> {
    // The command name may contain spaces and parentheses; fields resume after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Field 3 (state) is fields[0], so utime (14) and stime (15) are at 11 and 12.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / TICKS_PER_SECOND)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_with_odd_command_names_parse() {
        let line =
            "4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 1 0 0 0 250 50 0 0 20 0 4 0 1 1 1";
        assert_eq!(parse_stat(line), Some(3.0));
        assert!(own_cpu_seconds().is_some());
        assert!(tree_cpu_seconds(std::process::id()).is_some());
        assert!(parse_stat("garbage").is_none());
        let stat = "cpu  100 5 50 1000 7 3 2 0 0 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n";
        assert_eq!(parse_machine(stat), Some(1.6));
        assert!(machine_busy_seconds().is_some());
    }
}
