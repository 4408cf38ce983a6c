//! Timing: calibrate an iteration count to a target duration, then take the median of several repetitions.

use std::time::{Duration, Instant};

/// Something that can be run `iters` times in a row and timed as a whole.
pub trait Workload {
    /// Performs `iters` operations.
    fn run(&mut self, iters: u64) -> Result<(), String>;
}

/// Any closure over an iteration count is a workload.
impl<F: FnMut(u64) -> Result<(), String>> Workload for F {
    fn run(&mut self, iters: u64) -> Result<(), String> {
        self(iters)
    }
}

/// Nanoseconds per operation of one timed batch: wall clock, and CPU time of the whole process (which leaves
/// out time spent preempted by other work on a shared machine, and adds up both threads of a two-thread case).
pub struct Sample {
    pub wall: f64,
    pub cpu: f64,
}

pub fn time_batch(w: &mut dyn Workload, iters: u64) -> Result<Sample, String> {
    let cpu = proofs::sys::process_cpu_ns();
    let start = Instant::now();
    w.run(iters)?;
    let wall = start.elapsed().as_nanos() as f64;
    let cpu = proofs::sys::process_cpu_ns().saturating_sub(cpu) as f64;
    Ok(Sample {
        wall: wall / iters as f64,
        cpu: cpu / iters as f64,
    })
}

/// The number of iterations that takes roughly `target`, found by doubling from one (which also warms up).
pub fn calibrate(w: &mut dyn Workload, target: Duration, max_iters: u64) -> Result<u64, String> {
    let mut iters = 1u64;
    loop {
        let start = Instant::now();
        w.run(iters)?;
        let took = start.elapsed();
        if took >= target / 4 || iters >= max_iters {
            let per_op = took.as_nanos().max(1) as f64 / iters as f64;
            let want = (target.as_nanos() as f64 / per_op).ceil() as u64;
            return Ok(want.clamp(1, max_iters));
        }
        iters = iters.saturating_mul(2);
    }
}

/// The median of `values` (sorted in place); NaN for an empty slice.
pub fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(&mut []).is_nan());
    }

    #[test]
    fn calibration_respects_the_cap_and_counts_operations() {
        let mut calls = 0u64;
        let mut w = |iters: u64| {
            calls += iters;
            Ok(())
        };
        let iters = calibrate(&mut w, Duration::from_millis(1), 1000).unwrap();
        assert!((1..=1000).contains(&iters));
        assert!(calls >= 1);
    }
}
