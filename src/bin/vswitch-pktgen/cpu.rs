//! CPU time of the calling thread, from /proc/thread-self/stat.
//!
//! The generator reports how much of a core its sending and receiving
//! threads used: a figure taken while one of them was at 100% measured the
//! generator, not the switch. Clock ticks are USER_HZ (100 per second on
//! Linux, a fixed ABI), so the share is accurate to about 10 ms over the
//! run.

use std::time::{Duration, Instant};

const USER_HZ: f64 = 100.0;

/// User + system CPU seconds of the calling thread so far (0 if
/// /proc is unavailable).
fn thread_cpu_secs() -> f64 {
    let Ok(s) = std::fs::read_to_string("/proc/thread-self/stat") else {
        return 0.0;
    };
    // The command name may contain spaces: fields start after its ')'.
    let Some(rest) = s.rsplit_once(')').map(|(_, r)| r) else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After ')': state is field 3 of stat(5), so utime (14) is index 11.
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    (tick(11) + tick(12)) as f64 / USER_HZ
}

/// Measures the share of a core the calling thread uses from now on.
pub struct ThreadCpu {
    start_cpu: f64,
    start: Instant,
}

impl ThreadCpu {
    /// Starts measuring (call on the thread to measure).
    pub fn start() -> ThreadCpu {
        ThreadCpu {
            start_cpu: thread_cpu_secs(),
            start: Instant::now(),
        }
    }

    /// Share of one core used since `start` (call on the same thread).
    pub fn share(&self) -> f64 {
        let wall = self.start.elapsed().max(Duration::from_millis(1));
        ((thread_cpu_secs() - self.start_cpu) / wall.as_secs_f64()).max(0.0)
    }
}

/// Busy and softirq jiffies and the total, summed over all CPUs, from the
/// first line of /proc/stat (zeros if unavailable).
fn machine_jiffies() -> (u64, u64, u64) {
    let Ok(s) = std::fs::read_to_string("/proc/stat") else {
        return (0, 0, 0);
    };
    let Some(line) = s.lines().next().filter(|l| l.starts_with("cpu ")) else {
        return (0, 0, 0);
    };
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    let get = |i: usize| v.get(i).copied().unwrap_or(0);
    // user nice system idle iowait irq softirq steal (guest is in user).
    let idle = get(3) + get(4);
    let total: u64 = (0..8).map(get).sum();
    (total - idle, get(6), total)
}

/// The whole machine's CPU use over a run: the generator's threads are
/// not all of its cost (the kernel delivers veth and TAP frames in
/// softirq context, accounted to no thread), and on a small machine the
/// switch, the generator and everything else share the same cores.
pub struct MachineCpu {
    start: (u64, u64, u64),
}

/// What [`MachineCpu::end`] measured.
#[derive(Debug, Clone, Copy)]
pub struct MachineShare {
    /// Busy share of all CPUs together (1.0: every CPU busy all the time).
    pub busy: f64,
    /// Softirq share of all CPUs together.
    pub softirq: f64,
    /// Number of CPUs.
    pub cpus: usize,
}

impl MachineCpu {
    /// Starts measuring.
    pub fn start() -> MachineCpu {
        MachineCpu {
            start: machine_jiffies(),
        }
    }

    /// Shares since `start`.
    pub fn end(&self) -> MachineShare {
        let (b, s, t) = machine_jiffies();
        let dt = t.saturating_sub(self.start.2).max(1) as f64;
        MachineShare {
            busy: b.saturating_sub(self.start.0) as f64 / dt,
            softirq: s.saturating_sub(self.start.1) as f64 / dt,
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}
