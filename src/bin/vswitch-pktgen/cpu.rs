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
