//! `securememory bench`: each case timed against its baseline in the same run, medians of several repetitions.

mod cases;
mod floor;
mod library;
mod memory;
mod secret_memory;
pub mod stats;

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::cli::BenchArgs;
use crate::report::{nanos, Progress, Table};
use cases::Case;
use stats::{calibrate, median, time_batch};

/// How long each timed batch runs, and how many batches each figure is the median of.
struct Plan {
    batch: Duration,
    reps: usize,
}

impl Plan {
    fn new(quick: bool) -> Plan {
        if quick {
            Plan {
                batch: Duration::from_millis(25),
                reps: 7,
            }
        } else {
            Plan {
                batch: Duration::from_millis(100),
                reps: 11,
            }
        }
    }
}

/// One line of output (`--json` prints exactly this, one object per line).
#[derive(Debug, Serialize)]
pub struct Row {
    pub name: &'static str,
    /// Median nanoseconds per operation; `null` when the case could not run.
    pub ns_per_op: Option<f64>,
    pub baseline: &'static str,
    /// Median of the baseline, measured interleaved with this case.
    pub baseline_ns: Option<f64>,
    /// `ns_per_op / baseline_ns`.
    pub ratio: Option<f64>,
    pub goal: String,
    /// The goal as a threshold in nanoseconds, computed from this run's baselines.
    pub goal_ns: Option<f64>,
    /// Whether `ns_per_op <= goal_ns`; `null` for reference rows and cases that could not run.
    pub pass: Option<bool>,
    /// Repetitions the medians are taken over, and operations per repetition.
    pub reps: usize,
    pub iters: u64,
    pub min_ns: Option<f64>,
    pub max_ns: Option<f64>,
    /// The same medians in process CPU time, which leaves out time spent preempted on a shared machine.
    pub cpu_ns_per_op: Option<f64>,
    pub cpu_baseline_ns: Option<f64>,
    pub cpu_ratio: Option<f64>,
    /// Why the case has no figure.
    pub note: Option<String>,
    /// The Go libraries' figure for this work from the speed issue (orientation only, not measured here).
    pub go_reference_ns: Option<f64>,
}

fn unavailable(case: &Case, why: String) -> Row {
    Row {
        name: case.name,
        ns_per_op: None,
        baseline: case.baseline.name(),
        baseline_ns: None,
        ratio: None,
        goal: case.goal.describe(case.baseline),
        goal_ns: None,
        pass: None,
        reps: 0,
        iters: 0,
        min_ns: None,
        max_ns: None,
        cpu_ns_per_op: None,
        cpu_baseline_ns: None,
        cpu_ratio: None,
        note: Some(format!("not available: {why}")),
        go_reference_ns: cases::go_reference_ns(case.name),
    }
}

fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

fn measure(case: &Case, plan: &Plan) -> Result<Row, String> {
    let mut work = (case.make)()?;
    let mut parts = case.baseline.components()?;
    let iters = calibrate(work.as_mut(), plan.batch, case.max_iters)?;
    let part_iters = parts
        .iter_mut()
        .map(|p| calibrate(p.as_mut(), plan.batch, 10_000_000))
        .collect::<Result<Vec<_>, _>>()?;
    // [wall, cpu] samples of the case and of each baseline component.
    let mut samples = [Vec::with_capacity(plan.reps), Vec::with_capacity(plan.reps)];
    let mut part_samples =
        vec![[Vec::with_capacity(plan.reps), Vec::with_capacity(plan.reps)]; parts.len()];
    for _ in 0..plan.reps {
        for ((p, &n), s) in parts.iter_mut().zip(&part_iters).zip(&mut part_samples) {
            let t = time_batch(p.as_mut(), n)?;
            s[0].push(t.wall);
            s[1].push(t.cpu);
        }
        let t = time_batch(work.as_mut(), iters)?;
        samples[0].push(t.wall);
        samples[1].push(t.cpu);
    }
    let parts_median: Vec<f64> = part_samples.iter_mut().map(|s| median(&mut s[0])).collect();
    let parts_cpu: f64 = part_samples.iter_mut().map(|s| median(&mut s[1])).sum();
    let baseline_ns = parts_median.iter().sum::<f64>();
    let ns = median(&mut samples[0]);
    let cpu = median(&mut samples[1]);
    let goal_ns = finite(case.goal.threshold(&parts_median));
    Ok(Row {
        name: case.name,
        ns_per_op: Some(ns),
        baseline: case.baseline.name(),
        baseline_ns: Some(baseline_ns),
        ratio: Some(ns / baseline_ns),
        goal: case.goal.describe(case.baseline),
        goal_ns,
        pass: goal_ns.map(|g| ns <= g),
        reps: plan.reps,
        iters,
        min_ns: samples[0].first().copied(),
        max_ns: samples[0].last().copied(),
        cpu_ns_per_op: finite(cpu),
        cpu_baseline_ns: finite(parts_cpu),
        cpu_ratio: finite(cpu / parts_cpu),
        note: None,
        go_reference_ns: cases::go_reference_ns(case.name),
    })
}

fn print_table(rows: &[Row]) {
    let mut t = Table::new(&[
        "case",
        "ns/op",
        "baseline",
        "baseline ns",
        "ratio",
        "cpu ratio",
        "goal",
        "Go (issue)",
        "result",
    ]);
    for r in rows {
        let opt =
            |v: Option<f64>, f: &dyn Fn(f64) -> String| v.map(f).unwrap_or_else(|| "-".to_owned());
        t.row(vec![
            r.name.to_owned(),
            opt(r.ns_per_op, &nanos),
            r.baseline.to_owned(),
            opt(r.baseline_ns, &nanos),
            opt(r.ratio, &|x| format!("{x:.2}")),
            opt(r.cpu_ratio, &|x| format!("{x:.2}")),
            r.goal.clone(),
            opt(r.go_reference_ns, &nanos),
            match (r.pass, &r.note) {
                (Some(true), _) => "pass".to_owned(),
                (Some(false), _) => "FAIL".to_owned(),
                (None, Some(note)) => note.clone(),
                (None, None) => "-".to_owned(),
            },
        ]);
    }
    print!("{}", t.render());
}

/// Runs the benchmarks and prints them; returns the process exit status.
pub fn run(args: &BenchArgs) -> i32 {
    let mut plan = Plan::new(args.quick);
    if let Some(reps) = args.reps {
        plan.reps = reps as usize;
    }
    let cases: Vec<Case> = cases::all()
        .into_iter()
        .filter(|c| args.filter.as_deref().is_none_or(|f| c.name.contains(f)))
        .collect();
    let mut progress = Progress::new();
    let started = Instant::now();
    let mut rows = Vec::with_capacity(cases.len());
    for (i, case) in cases.iter().enumerate() {
        progress.step(&format!(
            "bench: [{}/{}] {} ({:.0} s elapsed)",
            i + 1,
            cases.len(),
            case.name,
            started.elapsed().as_secs_f64()
        ));
        let row = measure(case, &plan).unwrap_or_else(|why| unavailable(case, why));
        if args.json {
            match serde_json::to_string(&row) {
                Ok(line) => println!("{line}"),
                Err(e) => eprintln!("securememory bench: cannot encode {}: {e}", row.name),
            }
        }
        rows.push(row);
    }
    let memory_row = args
        .filter
        .as_deref()
        .is_none_or(|f| memory::NAME.contains(f))
        .then(|| {
            let count = if args.quick {
                memory::QUICK_COUNT
            } else {
                memory::COUNT
            };
            progress.step(&format!(
                "bench: {} ({count} live sealed secrets in a child)",
                memory::NAME,
            ));
            memory::measure(count)
        });
    progress.done();
    if args.json {
        if let Some(m) = &memory_row {
            match serde_json::to_string(m) {
                Ok(line) => println!("{line}"),
                Err(e) => eprintln!("securememory bench: cannot encode {}: {e}", m.name),
            }
        }
    }
    if !args.json {
        if !rows.is_empty() {
            print_table(&rows);
            println!(
                "\nmedian of {} repetitions of ~{} ms each, baselines re-measured between repetitions of every \
                 case",
                plan.reps,
                plan.batch.as_millis(),
            );
        }
        if let Some(m) = &memory_row {
            println!("\n{}", memory::line(m));
        }
        println!("{:.1} s in all", started.elapsed().as_secs_f64());
    }
    let mut missed = missed_goals(&rows);
    if memory_row.as_ref().is_some_and(|m| m.pass != Some(true)) {
        missed.push(memory::NAME);
    }
    if args.check && !missed.is_empty() {
        eprintln!(
            "securememory bench --check: {} goal(s) missed: {}",
            missed.len(),
            missed.join(", ")
        );
        return 1;
    }
    0
}

/// The rows with a goal that missed it or could not be measured (what `--check` fails on).
fn missed_goals(rows: &[Row]) -> Vec<&'static str> {
    rows.iter()
        .filter(|r| r.goal != "reference" && r.pass != Some(true))
        .map(|r| r.name)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::cases::Goal;
    use super::*;

    #[test]
    fn check_fails_on_missed_and_unmeasured_goals_only() {
        let row = |name, goal: Goal, pass| Row {
            pass,
            ..unavailable(
                &Case {
                    name,
                    goal,
                    ..cases::all().into_iter().next().expect("a case")
                },
                String::new(),
            )
        };
        let rows = [
            row("met", Goal::Ratio(2.0), Some(true)),
            row("missed", Goal::Ratio(2.0), Some(false)),
            row("unmeasured", Goal::AtMostNs(5.0), None),
            row("reference", Goal::Reference, None),
        ];
        assert_eq!(missed_goals(&rows), ["missed", "unmeasured"]);
    }
}
