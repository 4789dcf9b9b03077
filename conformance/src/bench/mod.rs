//! `coffer-conformance bench` (spec/conformance.md §11): times clients' decryption and
//! encryption of standard workloads through the same shim adapters as the suites. Every run
//! is a fresh adapter process, so its peak memory (the largest resident set of the adapter
//! and of every process it waited for) and CPU time are that run's alone. Outputs are
//! checked (decrypted bytes against the plaintext's digest, encrypted files by decrypting
//! them with the reference library), and ratios are taken against the reference measured
//! in the same run.

pub mod chart;
pub mod workloads;

use crate::shim::Adapter;
use serde::Serialize;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use workloads::{Workload, BENCH_KEY};

/// A client to time: a name for the tables and its adapter command line.
#[derive(Debug, Clone, Serialize)]
pub struct Tool {
    /// Short name (`coffer`, `wa-crypt-tools`).
    pub name: String,
    /// The adapter's command line.
    pub argv: Vec<String>,
}

/// One timed run.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Sample {
    /// From the request to its answer (the adapter's start-up is not counted).
    pub wall_seconds: f64,
    /// User plus system CPU of the adapter and its descendants, start-up included.
    pub cpu_seconds: f64,
    /// Peak resident set of the adapter or any descendant.
    pub max_rss_bytes: u64,
}

/// One tool on one workload and operation.
#[derive(Debug, Clone, Serialize)]
pub struct Measurement {
    /// The workload's name.
    pub workload: String,
    /// Plaintext bytes (the throughput counts these).
    pub plain_bytes: u64,
    /// `crypt15` or `coffer`.
    pub format: String,
    /// `decrypt` or `encrypt`.
    pub op: String,
    /// The tool's name.
    pub tool: String,
    /// `ok` when every run answered and the output checked; otherwise what happened.
    pub outcome: String,
    /// Every run.
    pub samples: Vec<Sample>,
    /// Median wall time, seconds.
    pub median_seconds: f64,
    /// (slowest - fastest) / median.
    pub spread: f64,
    /// Plaintext MiB per second at the median.
    pub mib_per_s: f64,
    /// The largest peak resident set over the runs.
    pub peak_rss_bytes: u64,
    /// Median CPU seconds.
    pub cpu_seconds: f64,
}

impl Measurement {
    /// Whether it counts (every run answered with output that checked).
    pub fn ok(&self) -> bool {
        self.outcome == "ok"
    }
}

/// A bench run.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// `coffer-bench/1`.
    pub format: &'static str,
    /// Logical CPUs of the machine.
    pub cpus: usize,
    /// Runs per measurement.
    pub runs: usize,
    /// The tools, with their adapters' own names.
    pub tools: Vec<(Tool, String)>,
    /// The workloads.
    pub workloads: Vec<Workload>,
    /// Every measurement.
    pub measurements: Vec<Measurement>,
}

/// How to run.
pub struct Options {
    /// Runs per measurement (the median is reported).
    pub runs: usize,
    /// Longest a run may take.
    pub timeout: Duration,
    /// Where outputs are written (removed after each run).
    pub scratch: PathBuf,
}

const OPS: [(&str, &str); 4] = [
    ("crypt15", "decrypt"),
    ("crypt15", "encrypt"),
    ("coffer", "decrypt"),
    ("coffer", "encrypt"),
];

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => 0.0,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// One run: a fresh adapter, one request, its usage. Returns the sample, or what happened.
fn one_run(tool: &Tool, request: serde_json::Value, timeout: Duration) -> Result<Sample, String> {
    let mut adapter = Adapter::start(&tool.argv, timeout).map_err(|e| e.to_string())?;
    let started = Instant::now();
    let answer = adapter
        .request("bench", request, timeout)
        .map_err(|e| format!("no answer: {e}"))?;
    let wall_seconds = started.elapsed().as_secs_f64();
    let usage = adapter.finish(timeout).map_err(|e| e.to_string())?;
    if answer["unimplemented"] == true {
        return Err("unimplemented".into());
    }
    if answer["ok"] != true {
        return Err(format!(
            "refused as {}",
            answer["error"].as_str().unwrap_or("?")
        ));
    }
    Ok(Sample {
        wall_seconds,
        cpu_seconds: usage.cpu_seconds,
        max_rss_bytes: usage.max_rss_bytes,
    })
}

/// Checks what a run wrote at `output`.
fn check_output(output: &Path, workload: &Workload, format: &str, op: &str) -> Result<(), String> {
    let got = match op {
        "decrypt" => workloads::digest(output),
        _ => workloads::decrypted_digest(output, format),
    }
    .map_err(|e| format!("output unreadable: {e}"))?;
    if got == workload.sha256 {
        Ok(())
    } else {
        Err("wrong output".into())
    }
}

fn measure(
    tool: &Tool,
    workload: &Workload,
    format: &str,
    op: &str,
    options: &Options,
) -> Measurement {
    let input = match (op, format) {
        ("decrypt", "crypt15") => &workload.crypt15,
        ("decrypt", _) => &workload.coffer,
        _ => &workload.plain,
    };
    let output = options
        .scratch
        .join(format!("{}-{}-{format}-{op}.out", tool.name, workload.name));
    let request = json!({"op": format!("{op}_file"), "format": format,
        "key": hex::encode(BENCH_KEY), "input": input, "output": output});
    let mut samples = Vec::new();
    let mut outcome = "ok".to_owned();
    for run in 0..options.runs {
        let _ = std::fs::remove_file(&output);
        let result = one_run(tool, request.clone(), options.timeout).and_then(|sample| {
            // The first run's output is checked; later runs repeat the same work.
            if run == 0 {
                check_output(&output, workload, format, op)?;
            }
            Ok(sample)
        });
        let _ = std::fs::remove_file(&output);
        match result {
            Ok(sample) => samples.push(sample),
            Err(why) => {
                outcome = why;
                break;
            }
        }
    }
    let mut walls: Vec<f64> = samples.iter().map(|s| s.wall_seconds).collect();
    let mut cpus: Vec<f64> = samples.iter().map(|s| s.cpu_seconds).collect();
    let median_seconds = median(&mut walls);
    let spread = match (walls.first(), walls.last()) {
        (Some(lo), Some(hi)) if median_seconds > 0.0 => (hi - lo) / median_seconds,
        _ => 0.0,
    };
    let mib_per_s = if median_seconds > 0.0 {
        workload.plain_len as f64 / (1 << 20) as f64 / median_seconds
    } else {
        0.0
    };
    Measurement {
        workload: workload.name.clone(),
        plain_bytes: workload.plain_len,
        format: format.into(),
        op: op.into(),
        tool: tool.name.clone(),
        outcome,
        peak_rss_bytes: samples.iter().map(|s| s.max_rss_bytes).max().unwrap_or(0),
        cpu_seconds: median(&mut cpus),
        samples,
        median_seconds,
        spread,
        mib_per_s,
    }
}

/// Times every tool on every workload, for the operations each declares in its hello
/// (`decrypt_file` / `encrypt_file` and their formats). `progress` hears each step.
pub fn run(
    tools: &[Tool],
    workloads: &[Workload],
    options: &Options,
    progress: &dyn Fn(&str),
) -> anyhow::Result<BenchReport> {
    std::fs::create_dir_all(&options.scratch)?;
    let mut declared = Vec::new();
    for tool in tools {
        let adapter = Adapter::start(&tool.argv, options.timeout)
            .map_err(|e| anyhow::anyhow!("{}: {e}", tool.name))?;
        declared.push((tool.clone(), adapter.hello.clone()));
    }
    let mut measurements = Vec::new();
    for workload in workloads {
        for (format, op) in OPS {
            for (tool, hello) in &declared {
                let supported = hello["capabilities"][format!("{op}_file")]
                    .as_array()
                    .is_some_and(|f| f.iter().any(|x| x == format));
                if !supported {
                    continue;
                }
                progress(&format!("{} {format} {op}: {}", workload.name, tool.name));
                measurements.push(measure(tool, workload, format, op, options));
            }
        }
    }
    Ok(BenchReport {
        format: "coffer-bench/1",
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        runs: options.runs,
        tools: declared
            .into_iter()
            .map(|(t, hello)| {
                let name = hello["name"].as_str().unwrap_or_default().to_owned();
                (t, name)
            })
            .collect(),
        workloads: workloads.to_vec(),
        measurements,
    })
}

impl BenchReport {
    /// The reference's measurement of the same workload and operation.
    pub fn baseline(&self, m: &Measurement) -> Option<&Measurement> {
        self.measurements.iter().find(|b| {
            b.tool == "coffer"
                && b.workload == m.workload
                && b.format == m.format
                && b.op == m.op
                && b.ok()
        })
    }

    /// Against the reference of the same run: (coffer's throughput / this tool's, this
    /// tool's peak memory / coffer's), when both are measured.
    pub fn ratios(&self, m: &Measurement) -> Option<(f64, f64)> {
        let b = self.baseline(m)?;
        (m.ok() && m.mib_per_s > 0.0 && b.peak_rss_bytes > 0).then(|| {
            (
                b.mib_per_s / m.mib_per_s,
                m.peak_rss_bytes as f64 / b.peak_rss_bytes as f64,
            )
        })
    }

    /// The table as text (console) or Markdown.
    pub fn table(&self, markdown: bool) -> String {
        let header = [
            "workload",
            "format",
            "op",
            "tool",
            "median",
            "MiB/s",
            "spread",
            "peak RSS",
            "CPU s",
            "outcome",
            "coffer speed x",
            "tool memory x",
        ];
        let rows: Vec<Vec<String>> = self
            .measurements
            .iter()
            .map(|m| {
                vec![
                    m.workload.clone(),
                    m.format.clone(),
                    m.op.clone(),
                    m.tool.clone(),
                    format!("{:.3} s", m.median_seconds),
                    format!("{:.0}", m.mib_per_s),
                    format!("{:.0}%", m.spread * 100.0),
                    format!("{:.1} MiB", m.peak_rss_bytes as f64 / (1 << 20) as f64),
                    format!("{:.2}", m.cpu_seconds),
                    m.outcome.clone(),
                    self.ratios(m)
                        .map_or("-".into(), |(speed, _)| format!("{speed:.2}")),
                    self.ratios(m)
                        .map_or("-".into(), |(_, memory)| format!("{memory:.2}")),
                ]
            })
            .collect();
        if markdown {
            let mut out = format!("| {} |\n|", header.join(" | "));
            out.push_str(&"---|".repeat(header.len()));
            out.push('\n');
            for row in rows {
                out.push_str(&format!("| {} |\n", row.join(" | ")));
            }
            return out;
        }
        let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.len());
            }
        }
        let line = |cells: Vec<String>| {
            cells
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect::<Vec<_>>()
                .join("  ")
                .trim_end()
                .to_owned()
                + "\n"
        };
        let mut out = line(header.iter().map(|h| h.to_string()).collect());
        for row in rows {
            out.push_str(&line(row));
        }
        out
    }
}
