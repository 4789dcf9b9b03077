//! The bench chart: throughput and peak memory per workload and operation, one bar per tool,
//! as SVG drawn with `plotters` (text is left to the browser, so no font library is needed),
//! and the HTML page that embeds it with the table.

use super::BenchReport;
use plotters::prelude::*;

const PALETTE: [RGBColor; 5] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x94, 0x67, 0xbd),
];

/// One panel's bars: value per (group, tool), drawn on a log scale when `log`.
fn panel(
    area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    title: &str,
    groups: &[String],
    tools: &[String],
    value: &dyn Fn(usize, usize) -> Option<f64>,
    unit: &str,
    log: bool,
) -> Result<(), String> {
    let e = |e: DrawingAreaErrorKind<_>| e.to_string();
    let (width, height) = area.dim_in_pixel();
    let (left, top, bottom) = (70i32, 30i32, 60i32);
    let plot_h = height as i32 - top - bottom;
    let font = ("sans-serif", 13).into_font();
    area.draw(&Text::new(title.to_owned(), (left, 8), font.clone()))
        .map_err(e)?;
    let max = (0..groups.len())
        .flat_map(|g| (0..tools.len()).filter_map(move |t| value(g, t)))
        .fold(0.0f64, f64::max);
    if max <= 0.0 {
        return Ok(());
    }
    let scale = |v: f64| -> i32 {
        let fraction = if log {
            (v.max(1.0).log10() / max.max(10.0).log10()).clamp(0.0, 1.0)
        } else {
            v / max
        };
        (fraction * plot_h as f64) as i32
    };
    let group_w = (width as i32 - left - 10) / groups.len().max(1) as i32;
    let bar_w = (group_w - 12) / tools.len().max(1) as i32;
    let base = top + plot_h;
    area.draw(&PathElement::new(
        vec![(left, base), (width as i32 - 10, base)],
        BLACK,
    ))
    .map_err(e)?;
    for (g, group) in groups.iter().enumerate() {
        let x0 = left + g as i32 * group_w + 6;
        for t in 0..tools.len() {
            let Some(v) = value(g, t) else { continue };
            let x = x0 + t as i32 * bar_w;
            let h = scale(v).max(1);
            area.draw(&Rectangle::new(
                [(x, base - h), (x + bar_w - 2, base)],
                PALETTE[t % PALETTE.len()].filled(),
            ))
            .map_err(e)?;
            let label = if v >= 100.0 {
                format!("{v:.0}")
            } else {
                format!("{v:.1}")
            };
            area.draw(&Text::new(
                label,
                (x, base - h - 14),
                ("sans-serif", 10).into_font(),
            ))
            .map_err(e)?;
        }
        area.draw(&Text::new(
            group.clone(),
            (x0, base + 6),
            ("sans-serif", 10).into_font(),
        ))
        .map_err(e)?;
    }
    area.draw(&Text::new(
        format!("{unit}{}", if log { " (log scale)" } else { "" }),
        (4, top),
        ("sans-serif", 10).into_font(),
    ))
    .map_err(e)?;
    for (t, tool) in tools.iter().enumerate() {
        let x = left + t as i32 * 160;
        let y = height as i32 - 22;
        area.draw(&Rectangle::new(
            [(x, y), (x + 12, y + 12)],
            PALETTE[t % PALETTE.len()].filled(),
        ))
        .map_err(e)?;
        area.draw(&Text::new(
            tool.clone(),
            (x + 16, y),
            ("sans-serif", 11).into_font(),
        ))
        .map_err(e)?;
    }
    Ok(())
}

/// The chart as one SVG document: throughput above, peak memory below.
pub fn svg(report: &BenchReport) -> Result<String, String> {
    let mut groups: Vec<(String, String, String)> = Vec::new();
    for m in &report.measurements {
        let key = (m.workload.clone(), m.format.clone(), m.op.clone());
        if !groups.contains(&key) {
            groups.push(key);
        }
    }
    let tools: Vec<String> = report.tools.iter().map(|(t, _)| t.name.clone()).collect();
    let labels: Vec<String> = groups
        .iter()
        .map(|(w, f, o)| format!("{w} {f} {o}"))
        .collect();
    let find = |g: usize, t: usize| {
        let (w, f, o) = &groups[g];
        report
            .measurements
            .iter()
            .find(|m| &m.workload == w && &m.format == f && &m.op == o && m.tool == tools[t])
            .filter(|m| m.ok())
    };
    let width = (160 + groups.len() * (40 + 26 * tools.len())).max(640) as u32;
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (width, 700)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let (upper, lower) = root.split_vertically(350);
        panel(
            &upper,
            "Throughput (plaintext MiB/s, median; higher is better)",
            &labels,
            &tools,
            &|g, t| find(g, t).map(|m| m.mib_per_s),
            "MiB/s",
            true,
        )?;
        panel(
            &lower,
            "Peak memory (MiB, largest resident set of the tool's processes; lower is better)",
            &labels,
            &tools,
            &|g, t| find(g, t).map(|m| m.peak_rss_bytes as f64 / (1 << 20) as f64),
            "MiB",
            true,
        )?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(out)
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// One self-contained page: the chart (inline SVG) and the table.
pub fn html(report: &BenchReport) -> Result<String, String> {
    let chart = svg(report)?;
    let chart = chart
        .find("<svg")
        .map_or(chart.as_str(), |at| &chart[at..])
        .to_owned();
    Ok(format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Coffer bench</title>\n\
         <style>body {{ font-family: sans-serif; margin: 1.5em; }} pre {{ font-size: 0.85em; }}</style></head><body>\n\
         <h1>Coffer bench</h1>\n<p>{} runs per measurement on {} CPUs; ratios against the reference measured in the same run.</p>\n\
         {chart}\n<pre>{}</pre>\n</body></html>\n",
        report.runs,
        report.cpus,
        escape(&report.table(false))
    ))
}
