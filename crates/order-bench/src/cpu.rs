//! Process CPU time from `/proc/<pid>/stat` (user + system, all threads),
//! for the service instances, the backends' processes (found by name with
//! `pidof`, by `/proc/*/comm` or by `/proc/*/cmdline`) and this process.
//!
//! [`Meter`] samples a fixed set of processes at the edges of a phase
//! (start of the measured window, end of the load, pipeline caught up) and
//! [`PhaseCpu`] holds what each used in between.

use std::process::Command;
use std::time::Instant;

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

/// CPU seconds this process (the load generator) has used so far.
pub fn self_cpu_secs(ticks: f64) -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    Some(parse_stat_ticks(&stat)? as f64 / ticks)
}

/// Whether a `/proc/<pid>/cmdline` (arguments separated by NUL) runs
/// `program`: an argument among the first two (the interpreter and the
/// script, for a script) whose file name is `program`.
pub fn cmdline_runs(cmdline: &[u8], program: &str) -> bool {
    cmdline
        .split(|b| *b == 0)
        .take(2)
        .filter_map(|arg| std::str::from_utf8(arg).ok())
        .any(|arg| arg.rsplit('/').next() == Some(program))
}

/// The numeric entries of `/proc` other than this process.
fn proc_pids() -> Vec<u32> {
    let me = std::process::id();
    std::fs::read_dir("/proc")
        .map(|dir| {
            dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
                .filter(|p| *p != me)
                .collect()
        })
        .unwrap_or_default()
}

/// Processes whose `/proc/<pid>/comm` is `name` (the kernel's 15-byte
/// name, so only for short names).
pub fn pids_by_comm(name: &str) -> Vec<u32> {
    proc_pids()
        .into_iter()
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim_end() == name)
        })
        .collect()
}

/// Processes running `program` according to their command line (see
/// [`cmdline_runs`]): finds scripts started through an interpreter.
pub fn pids_by_cmdline(program: &str) -> Vec<u32> {
    proc_pids()
        .into_iter()
        .filter(|p| {
            std::fs::read(format!("/proc/{p}/cmdline")).is_ok_and(|c| cmdline_runs(&c, program))
        })
        .collect()
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

/// What a [`Meter`] watches under one name.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    Pids(Vec<u32>),
    /// This process: the load generator.
    Myself,
}

/// A fixed set of named processes whose CPU is sampled together.
#[derive(Debug, Clone)]
pub struct Meter {
    ticks: f64,
    watched: Vec<(String, Source)>,
}

/// CPU seconds of every watched process at one instant (None: unreadable).
#[derive(Debug, Clone)]
pub struct Sample {
    at: Instant,
    secs: Vec<Option<f64>>,
}

/// Name of the load generator's own entry.
pub const BENCH: &str = "order-bench";
/// Name of the service's entry.
pub const SERVICE: &str = "order-service";

impl Meter {
    /// Watches the service (when its pid is known), this process, and each
    /// backend that has processes.
    pub fn new(service_pid: Option<u32>, backends: Vec<(String, Vec<u32>)>) -> Meter {
        let mut watched = Vec::new();
        if let Some(pid) = service_pid {
            watched.push((SERVICE.to_owned(), Source::Pids(vec![pid])));
        }
        watched.push((BENCH.to_owned(), Source::Myself));
        watched.extend(
            backends
                .into_iter()
                .filter(|(_, pids)| !pids.is_empty())
                .map(|(name, pids)| (name, Source::Pids(pids))),
        );
        Meter {
            ticks: ticks_per_sec(),
            watched,
        }
    }

    /// The names watched, service first, then this process, then backends.
    pub fn names(&self) -> Vec<&str> {
        self.watched.iter().map(|(n, _)| n.as_str()).collect()
    }

    pub fn sample(&self) -> Sample {
        let secs = self
            .watched
            .iter()
            .map(|(_, source)| match source {
                Source::Myself => self_cpu_secs(self.ticks),
                Source::Pids(pids) => {
                    let each: Vec<f64> = pids
                        .iter()
                        .filter_map(|p| cpu_secs(*p, self.ticks))
                        .collect();
                    (!each.is_empty()).then(|| each.iter().sum())
                }
            })
            .collect();
        Sample {
            at: Instant::now(),
            secs,
        }
    }

    /// What each process used from `start` to `end` (the load) and to
    /// `after` (the load and the pipeline's catch-up).
    pub fn phase(&self, start: &Sample, end: &Sample, after: &Sample) -> PhaseCpu {
        let used = |i: usize, later: &Sample| match (start.secs.get(i), later.secs.get(i)) {
            (Some(Some(a)), Some(Some(b))) => Some((b - a).max(0.0)),
            _ => None,
        };
        PhaseCpu {
            load_secs: end.at.saturating_duration_since(start.at).as_secs_f64(),
            total_secs: after.at.saturating_duration_since(start.at).as_secs_f64(),
            processes: self
                .watched
                .iter()
                .enumerate()
                .map(|(i, (name, _))| ProcessUse {
                    name: name.clone(),
                    load: used(i, end),
                    total: used(i, after),
                })
                .collect(),
        }
    }
}

/// CPU seconds one process (set) used over a phase.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProcessUse {
    pub name: String,
    /// From the start of the measured window to the end of the load.
    pub load: Option<f64>,
    /// The same plus the catch-up of the outbox and the projector.
    pub total: Option<f64>,
}

impl ProcessUse {
    /// Cores busy on average during the load.
    pub fn cores(&self, wall_secs: f64) -> Option<f64> {
        ratio(self.load?, wall_secs)
    }
}

/// Per-process CPU of one phase, with the wall-clock lengths it covers.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PhaseCpu {
    /// Seconds from the start of the measured window to the end of the load.
    pub load_secs: f64,
    /// The same plus the wait for the pipeline to catch up.
    pub total_secs: f64,
    pub processes: Vec<ProcessUse>,
}

impl PhaseCpu {
    pub fn get(&self, name: &str) -> Option<&ProcessUse> {
        self.processes.iter().find(|p| p.name == name)
    }

    pub fn service(&self) -> Option<&ProcessUse> {
        self.get(SERVICE)
    }

    pub fn bench(&self) -> Option<&ProcessUse> {
        self.get(BENCH)
    }

    /// The backends' entries (neither the service nor this process).
    pub fn backends(&self) -> impl Iterator<Item = &ProcessUse> {
        self.processes
            .iter()
            .filter(|p| p.name != SERVICE && p.name != BENCH)
    }
}

/// `a / b` when `b` is positive.
fn ratio(a: f64, b: f64) -> Option<f64> {
    (b > 0.0).then(|| a / b)
}

/// Microseconds of CPU per unit of work (None without work or a figure).
pub fn us_per(cpu_secs: Option<f64>, count: u64) -> Option<f64> {
    ratio(cpu_secs? * 1e6, count as f64)
}

/// The backend processes of the production profile: MariaDB (`pidof`, else
/// `/proc/*/comm`), Tansu (`$ORDER_TEST_TANSU_PID`, else `pidof`) and the
/// nx-27017 MongoDB stand-in (a Python script: `/proc/*/cmdline`). A
/// backend without processes is left out.
pub fn production_backends() -> Vec<(String, Vec<u32>)> {
    let mut mariadb = pids_of("mariadbd");
    if mariadb.is_empty() {
        mariadb = pids_by_comm("mariadbd");
    }
    let tansu = std::env::var("ORDER_TEST_TANSU_PID")
        .ok()
        .and_then(|p| p.trim().parse::<u32>().ok())
        .filter(|p| std::path::Path::new(&format!("/proc/{p}/stat")).exists())
        .map_or_else(|| pids_of("tansu"), |p| vec![p]);
    vec![
        ("mariadbd".to_owned(), mariadb),
        ("tansu".to_owned(), tansu),
        ("nx-27017".to_owned(), pids_by_cmdline("nx-27017")),
    ]
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
        assert!(self_cpu_secs(ticks).is_some_and(|s| s >= 0.0));
    }

    #[test]
    fn a_script_is_found_by_its_name_after_the_interpreter() {
        let script = b"/opt/venv/bin/python3\0/opt/venv/bin/nx-27017\0--data-dir\0memory\0";
        assert!(cmdline_runs(script, "nx-27017"));
        assert!(cmdline_runs(b"nx-27017\x00-p\x0027017\x00", "nx-27017"));
        let mention = b"/bin/grep\0-r\0nx-27017\0";
        assert!(!cmdline_runs(mention, "nx-27017"));
        assert!(!cmdline_runs(b"", "nx-27017"));
    }

    #[test]
    fn the_meter_reports_per_phase_use_of_each_process() {
        let meter = Meter::new(Some(std::process::id()), vec![("none".into(), vec![])]);
        assert_eq!(meter.names(), [SERVICE, BENCH]);
        let a = meter.sample();
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_add(i * i);
        }
        assert!(x > 0);
        let b = meter.sample();
        let phase = meter.phase(&a, &b, &b);
        let service = phase.service().cloned().unwrap_or_default();
        assert!(service.load.is_some_and(|s| s >= 0.0), "{phase:?}");
        assert_eq!(service.load, service.total);
        assert!(phase.bench().is_some());
        assert_eq!(phase.backends().count(), 0);
    }

    #[test]
    fn cpu_per_unit_is_in_microseconds_and_needs_work() {
        assert_eq!(us_per(Some(2.0), 1000), Some(2000.0));
        assert_eq!(us_per(Some(2.0), 0), None);
        assert_eq!(us_per(None, 10), None);
        let p = ProcessUse {
            name: "x".into(),
            load: Some(3.0),
            total: Some(4.0),
        };
        assert_eq!(p.cores(2.0), Some(1.5));
        assert_eq!(p.cores(0.0), None);
    }
}
