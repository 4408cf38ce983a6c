//! The doctor's report as readable text.

use std::fmt::Write;

use super::DoctorReport;
use crate::report::{bytes, wrap, Status, Table};

/// The width the text report keeps to unless `--wide` is given.
pub const WIDTH: usize = 100;

fn yes_no(v: Option<bool>) -> &'static str {
    match v {
        Some(true) => "yes",
        Some(false) => "no",
        None => "unknown",
    }
}

fn host_section(r: &DoctorReport, max: Option<usize>, out: &mut String) {
    let h = &r.host;
    let mut t = Table::new(&["host", "value"]);
    t.row(vec![
        "os".into(),
        format!(
            "{} {} {}{}",
            h.os.sysname,
            h.os.release,
            h.os.machine,
            h.os.distribution
                .as_deref()
                .map(|d| format!(" ({d})"))
                .unwrap_or_default()
        ),
    ]);
    t.row(vec!["page size".into(), format!("{} bytes", h.page_size)]);
    t.row(vec![
        "vm.max_map_count".into(),
        h.max_map_count
            .map_or("unknown".to_owned(), |n| n.to_string()),
    ]);
    let m = &h.memlock;
    t.row(vec![
        "RLIMIT_MEMLOCK".into(),
        match &m.error {
            Some(e) => format!("unreadable: {e}"),
            None => format!("{} soft, {} hard", bytes(m.soft_bytes), bytes(m.hard_bytes)),
        },
    ]);
    t.row(vec![
        "CAP_IPC_LOCK".into(),
        match m.cap_ipc_lock {
            Some(true) => "yes: this process may lock beyond the limit".to_owned(),
            other => yes_no(other).to_owned(),
        },
    ]);
    t.row(vec![
        "locked now".into(),
        bytes(Some(m.locked_now_bytes.unwrap_or(0))),
    ]);
    let c = &h.core;
    t.row(vec![
        "RLIMIT_CORE".into(),
        format!(
            "{} soft, {} hard",
            bytes(c.rlimit_soft),
            bytes(c.rlimit_hard)
        ),
    ]);
    t.row(vec![
        "core_pattern".into(),
        c.core_pattern
            .clone()
            .unwrap_or_else(|| "unreadable".into()),
    ]);
    t.row(vec![
        "dumpable / suid_dumpable".into(),
        format!(
            "{} / {}",
            yes_no(c.dumpable),
            c.suid_dumpable.as_deref().unwrap_or("unknown")
        ),
    ]);
    t.row(vec![
        "coredump_filter".into(),
        c.coredump_filter
            .clone()
            .unwrap_or_else(|| "unknown".into()),
    ]);
    out.push_str(&t.render_within(max));
}

fn capacity_section(r: &DoctorReport, max: Option<usize>, out: &mut String) {
    let _ = writeln!(
        out,
        "\nHow many {}-byte secrets fit under the locked-memory limit (sealed ones cost none)",
        r.secret_size
    );
    let mut t = Table::new(&[
        "flavour",
        "locked/secret",
        "mapped/secret",
        "by arithmetic",
        "measured",
        "measured cost of one more; how measured",
    ]);
    for c in &r.capacity {
        let sealed = c.flavour == proofs::Flavour::Sealed.name();
        let (measured, how) = match (&c.measured, &c.not_measured) {
            (Some(m), _) if sealed => (m.count.to_string(), sealed_how(m)),
            (Some(m), _) => (
                m.count.to_string(),
                format!(
                    "child allocated until {}{} in {} ms",
                    match m.stopped_by.as_str() {
                        "lock-limit" => "the limit refused",
                        "cap" => "the cap (limit not binding)",
                        _ => "an error",
                    },
                    if m.ipc_lock_dropped {
                        ", CAP_IPC_LOCK dropped"
                    } else {
                        ""
                    },
                    m.elapsed_ms
                ),
            ),
            (None, why) => ("not measured".to_owned(), why.clone().unwrap_or_default()),
        };
        t.row(vec![
            c.flavour.to_owned(),
            bytes(Some(c.locked_bytes_per_secret)),
            bytes(Some(c.mapped_bytes_per_secret)),
            c.by_arithmetic
                .map_or("unbounded".to_owned(), |n| n.to_string()),
            measured,
            if sealed {
                // The footprint from the first secret to the last is in `how`.
                how
            } else {
                format!(
                    "{}; {how}",
                    c.measured
                        .as_ref()
                        .and_then(|m| m.marginal.as_ref())
                        .map_or("-".to_owned(), |g| {
                            format!(
                                "{:.0} B locked, {:.0} B mapped, {:.2} mappings",
                                g.locked_bytes, g.mapped_bytes, g.mappings
                            )
                        })
                )
            },
        ]);
    }
    out.push_str(&t.render_within(max));
}

/// How the sealed flavour's count was measured: held to the target, read back, and the footprint from the
/// first secret to the last.
fn sealed_how(m: &proofs::scenarios::fill::Measured) -> String {
    let mut how = format!(
        "child held {} (the target; memlock does not bound them){}",
        m.count,
        if m.ipc_lock_dropped {
            ", CAP_IPC_LOCK dropped"
        } else {
            ""
        }
    );
    if let Some(r) = &m.read_back {
        let _ = write!(how, ", read {} of {} back exactly", r.exact, r.checked);
    }
    if let Some(span) = &m.span {
        let _ = write!(
            how,
            "; from 1 to {}: VmLck {:+} B, mappings {:+}",
            span.to,
            span.locked_growth(),
            span.mapping_growth()
        );
        if let Some(b) = span.resident_per_secret() {
            let _ = write!(how, ", {b:.0} B resident each");
        }
    }
    let _ = write!(how, "; in {} ms", m.elapsed_ms);
    how
}

fn checks_section(r: &DoctorReport, max: Option<usize>, out: &mut String) {
    out.push_str("\nChecks and live proofs\n");
    match max {
        None => {
            let mut t = Table::new(&["status", "check", "evidence"]);
            for c in &r.checks {
                t.row(vec![
                    c.status.to_string(),
                    c.check.clone(),
                    c.detail.clone(),
                ]);
            }
            out.push_str(&t.render());
        }
        Some(max) => {
            // Evidence on indented lines of its own, so the table fits a terminal.
            for c in &r.checks {
                let _ = writeln!(out, "{}  {}", c.status, c.check);
                for line in wrap(&c.detail, max - 4) {
                    let _ = writeln!(out, "    {line}");
                }
            }
        }
    }
    // Checks that share a fix (the same limit for several flavours) get one line.
    let mut fixes: Vec<(Vec<String>, &str)> = Vec::new();
    for c in r.checks.iter().filter(|c| c.status != Status::Pass) {
        let Some(fix) = c.fix.as_deref() else {
            continue;
        };
        match fixes.iter_mut().find(|(_, f)| *f == fix) {
            Some((names, _)) => names.push(c.check.clone()),
            None => fixes.push((vec![c.check.clone()], fix)),
        }
    }
    if !fixes.is_empty() {
        out.push_str("\nFixes\n");
        for (names, fix) in fixes {
            let text = format!("{}: {fix}", names.join(", "));
            for (n, line) in wrap(&text, max.unwrap_or(usize::MAX) - 2)
                .iter()
                .enumerate()
            {
                let _ = writeln!(out, "{}{line}", if n == 0 { "- " } else { "  " });
            }
        }
    }
}

/// The whole report as text: within [`WIDTH`] columns, or with each check on one line however long when
/// `wide`.
pub fn text(r: &DoctorReport, wide: bool) -> String {
    let max = (!wide).then_some(WIDTH);
    let mut out = format!(
        "securememory doctor {}: can this host keep secrets?\n\n",
        r.version
    );
    host_section(r, max, &mut out);
    capacity_section(r, max, &mut out);
    checks_section(r, max, &mut out);
    let count = |st: Status| r.checks.iter().filter(|c| c.status == st).count();
    let (warn, skip) = (count(Status::Warn), count(Status::Skip));
    let result = if r.ok && warn + skip == 0 {
        "Result: every guarantee holds on this host.".to_owned()
    } else if r.ok {
        format!(
            "Result: every guarantee that could be checked holds on this host ({warn} warning(s), {skip} check(s) \
             not possible here; see above)."
        )
    } else {
        format!("Result: FAILING: {}", r.failing.join(", "))
    };
    out.push('\n');
    for line in wrap(&result, max.unwrap_or(usize::MAX)) {
        let _ = writeln!(out, "{line}");
    }
    out
}
