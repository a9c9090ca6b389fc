//! Process CPU time from `/proc/<pid>/stat` (user + system, all threads),
//! for the service instances and the backends' processes (found by name
//! with `pidof`).

use std::process::Command;

/// Clock ticks per second of `/proc/<pid>/stat` (`getconf CLK_TCK`, else 100).
pub fn ticks_per_sec() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}

/// utime + stime in ticks from the text of `/proc/<pid>/stat`. The command
/// name (field 2) may hold spaces and parentheses: fields are counted after
/// its closing parenthesis, where field 3 (state) comes first.
pub fn parse_stat_ticks(stat: &str) -> Option<u64> {
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// CPU seconds `pid` has used so far (None: gone or unreadable).
pub fn cpu_secs(pid: u32, ticks: f64) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    Some(parse_stat_ticks(&stat)? as f64 / ticks)
}

/// Processes named `name` (`pidof -x`, so scripts count too); empty when
/// none or when `pidof` is missing.
pub fn pids_of(name: &str) -> Vec<u32> {
    Command::new("pidof")
        .args(["-x", name])
        .output()
        .ok()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The processes of one backend, and their CPU seconds when first looked at.
#[derive(Debug, Clone)]
pub struct Watched {
    pub name: String,
    pids: Vec<u32>,
    start: f64,
}

impl Watched {
    /// Starts watching the processes named `name` (none found: reported as
    /// unavailable).
    pub fn start(name: &str, ticks: f64) -> Watched {
        let pids = pids_of(name);
        let start = total(&pids, ticks);
        Watched {
            name: name.to_owned(),
            pids,
            start,
        }
    }

    /// CPU seconds used since [`Watched::start`]; None when no process was found.
    pub fn used(&self, ticks: f64) -> Option<f64> {
        (!self.pids.is_empty()).then(|| (total(&self.pids, ticks) - self.start).max(0.0))
    }
}

fn total(pids: &[u32], ticks: f64) -> f64 {
    pids.iter().filter_map(|p| cpu_secs(*p, ticks)).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utime_and_stime_are_read_after_the_command_name() {
        let stat = "4242 (tokio (w) x) S 1 4242 4242 0 -1 4194560 1200 0 0 0 350 25 0 0 20 0 9 0 \
                    123 456 789";
        assert_eq!(parse_stat_ticks(stat), Some(375));
        assert_eq!(parse_stat_ticks("garbage"), None);
        assert_eq!(parse_stat_ticks("1 (x) S 1 2"), None);
    }

    #[test]
    fn this_process_has_used_some_cpu() {
        let ticks = ticks_per_sec();
        let mine = cpu_secs(std::process::id(), ticks);
        assert!(mine.is_some_and(|s| s >= 0.0), "{mine:?}");
        assert_eq!(
            Watched::start("no-such-process-xyz", ticks).used(ticks),
            None
        );
    }
}
