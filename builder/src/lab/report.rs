//! The lab's results: a table for people, JSON, and JUnit XML for CI.

use super::machine::{MachineResult, Outcome2};
use std::fmt::Write;
use std::time::Duration;

/// Times of the whole run.
pub struct Summary {
    pub env: String,
    /// Building (or reading) the outputs.
    pub build: Duration,
    /// From the first QEMU start to the last machine done.
    pub machines: Duration,
    pub total: Duration,
    pub jobs: usize,
}

/// One row per machine: boot path, time to ready, checks passed.
pub fn table(results: &[MachineResult], s: &Summary) -> String {
    let mut rows = vec![["machine".to_string(), "boot".into(), "ready".into(), "checks".into(), "result".into()]];
    for r in results {
        rows.push([
            r.name.clone(),
            r.boot_path.clone(),
            r.ready.map_or("-".into(), |t| format!("{:.1} s", t.as_secs_f64())),
            format!("{}/{}", r.passed(), r.checks.len()),
            if r.ok() { "passed".into() } else { "FAILED".into() },
        ]);
    }
    let w: Vec<usize> = (0..5).map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for row in &rows {
        let line: Vec<String> = row.iter().enumerate().map(|(i, c)| format!("{c:<width$}", width = w[i])).collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    let passed = results.iter().filter(|r| r.ok()).count();
    let _ = writeln!(
        out,
        "lab {}: {passed}/{} machines passed; build {:.1} s, machines {:.1} s ({} at once), total {:.1} s",
        s.env,
        results.len(),
        s.build.as_secs_f64(),
        s.machines.as_secs_f64(),
        s.jobs,
        s.total.as_secs_f64()
    );
    out
}

pub fn json(results: &[MachineResult], s: &Summary) -> serde_json::Value {
    let machines: Vec<_> = results
        .iter()
        .map(|r| {
            let checks: Vec<_> = r
                .checks
                .iter()
                .map(|c| {
                    let (result, seconds, why) = match &c.outcome {
                        Outcome2::Passed(t) => ("passed", Some(t.as_secs_f64()), None),
                        Outcome2::Failed { why, .. } => ("failed", None, Some(why.clone())),
                        Outcome2::NotRun => ("not run", None, None),
                    };
                    serde_json::json!({"check": c.name, "at": c.at, "result": result, "seconds": seconds, "why": why})
                })
                .collect();
            serde_json::json!({"machine": r.name, "boot": r.boot_path, "ready_seconds": r.ready.map(|t| t.as_secs_f64()),
                "passed": r.ok(), "checks": checks, "console_log": r.log})
        })
        .collect();
    serde_json::json!({"environment": s.env, "build_seconds": s.build.as_secs_f64(), "machines_seconds": s.machines.as_secs_f64(),
        "total_seconds": s.total.as_secs_f64(), "jobs": s.jobs, "machines": machines})
}

fn xml(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control() || *c == '\n' || *c == '\t')
        .map(|c| match c {
            '&' => "&amp;".to_string(),
            '<' => "&lt;".into(),
            '>' => "&gt;".into(),
            '"' => "&quot;".into(),
            '\'' => "&apos;".into(),
            c => c.to_string(),
        })
        .collect()
}

/// JUnit XML: a test suite per machine, a test case per check (a check not run is skipped).
pub fn junit(results: &[MachineResult], s: &Summary) -> String {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let tests: usize = results.iter().map(|r| r.checks.len()).sum();
    let failures: usize =
        results.iter().map(|r| r.checks.iter().filter(|c| matches!(c.outcome, Outcome2::Failed { .. })).count()).sum();
    let _ = writeln!(
        out,
        "<testsuites name=\"{}\" tests=\"{tests}\" failures=\"{failures}\" time=\"{:.3}\">",
        xml(&s.env),
        s.total.as_secs_f64()
    );
    for r in results {
        let f = r.checks.iter().filter(|c| matches!(c.outcome, Outcome2::Failed { .. })).count();
        let _ = writeln!(
            out,
            "  <testsuite name=\"{}.{}\" tests=\"{}\" failures=\"{f}\">",
            xml(&s.env),
            xml(&r.name),
            r.checks.len()
        );
        for c in &r.checks {
            let (time, body) = match &c.outcome {
                Outcome2::Passed(t) => (t.as_secs_f64(), String::new()),
                Outcome2::Failed { why, console } => (
                    0.0,
                    format!(
                        "\n      <failure message=\"{}\">{}</failure>\n    ",
                        xml(why),
                        xml(&format!("{}\n{console}", c.at))
                    ),
                ),
                Outcome2::NotRun => (0.0, "<skipped/>".into()),
            };
            let _ = writeln!(
                out,
                "    <testcase classname=\"{}.{}\" name=\"{}\" time=\"{time:.3}\">{body}</testcase>",
                xml(&s.env),
                xml(&r.name),
                xml(&c.name)
            );
        }
        let _ = writeln!(out, "  </testsuite>");
    }
    out.push_str("</testsuites>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::machine::CheckResult;

    fn results() -> Vec<MachineResult> {
        vec![
            MachineResult {
                name: "bios".into(),
                boot_path: "pxe bios on lan".into(),
                ready: Some(Duration::from_millis(21500)),
                checks: vec![
                    CheckResult {
                        name: "ready within 300 s".into(),
                        at: "e.toml".into(),
                        outcome: Outcome2::Passed(Duration::from_secs(21)),
                    },
                    CheckResult {
                        name: "reach \"uefi\"".into(),
                        at: "e.toml:9".into(),
                        outcome: Outcome2::Passed(Duration::from_secs(1)),
                    },
                ],
                log: "/l/bios.log".into(),
            },
            MachineResult {
                name: "usb".into(),
                boot_path: "usb bios".into(),
                ready: None,
                checks: vec![
                    CheckResult {
                        name: "ready within 9 s".into(),
                        at: "e.toml".into(),
                        outcome: Outcome2::Failed { why: "no <ready> & more".into(), console: "last line".into() },
                    },
                    CheckResult { name: "reboot".into(), at: "e.toml:20".into(), outcome: Outcome2::NotRun },
                ],
                log: "/l/usb.log".into(),
            },
        ]
    }

    fn summary() -> Summary {
        Summary {
            env: "two".into(),
            build: Duration::from_secs(2),
            machines: Duration::from_secs(40),
            total: Duration::from_secs(43),
            jobs: 2,
        }
    }

    #[test]
    fn the_table_has_a_row_per_machine_and_the_totals() {
        let t = table(&results(), &summary());
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0].split_whitespace().collect::<Vec<_>>(), ["machine", "boot", "ready", "checks", "result"]);
        assert!(lines[1].starts_with("bios     pxe bios on lan  21.5 s  2/2     passed"), "{t}");
        assert!(
            lines[2].contains("usb bios")
                && lines[2].contains(" -  ")
                && lines[2].contains("0/2")
                && lines[2].ends_with("FAILED"),
            "{t}"
        );
        assert!(lines[3].starts_with("lab two: 1/2 machines passed; build 2.0 s, machines 40.0 s (2 at once)"), "{t}");
    }

    #[test]
    fn junit_counts_failures_escapes_and_skips() {
        let x = junit(&results(), &summary());
        assert!(x.contains("<testsuites name=\"two\" tests=\"4\" failures=\"1\""), "{x}");
        assert!(x.contains("<testsuite name=\"two.usb\" tests=\"2\" failures=\"1\">"), "{x}");
        assert!(x.contains("<failure message=\"no &lt;ready&gt; &amp; more\">e.toml\nlast line</failure>"), "{x}");
        assert!(x.contains("name=\"reboot\" time=\"0.000\"><skipped/></testcase>"), "{x}");
        assert!(x.contains("name=\"reach &quot;uefi&quot;\" time=\"1.000\"></testcase>"), "{x}");
        let j = json(&results(), &summary());
        assert_eq!(j["machines"][1]["checks"][0]["why"], "no <ready> & more");
        assert_eq!(j["machines"][0]["passed"], true);
    }
}
