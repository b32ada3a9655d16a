//! From samples to rows, and from rows to the console table, `report.md` and the
//! SVG chart of the ratios.

use std::fmt::Write as _;

use crate::cases::{AREAS, Gap};
use crate::harness::{Case, Floor, Role, Samples, median, paired_ratio, quantile};

/// One line of the report.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub(crate) area: &'static str,
    pub(crate) workload: &'static str,
    pub(crate) label: &'static str,
    pub(crate) role: Role,
    pub(crate) note: &'static str,
    /// `None` for an empty cell; then `note` says why.
    pub(crate) stats: Option<Stats>,
}

/// The figures of a measured row.
#[derive(Debug, Clone)]
pub(crate) struct Stats {
    /// Median ns per operation.
    pub(crate) median: f64,
    /// First quartile of ns per operation.
    pub(crate) p25: f64,
    /// Third quartile of ns per operation.
    pub(crate) p75: f64,
    /// Samples taken.
    pub(crate) rounds: usize,
    /// The floor and the paired ratio to it.
    pub(crate) floor: Option<(Floor, f64)>,
    /// The best peer of the workload and the paired ratio to it.
    pub(crate) best: Option<(&'static str, f64)>,
    /// For a multi-thread row: throughput relative to one thread.
    pub(crate) scaling: Option<f64>,
}

fn role_rank(role: Role) -> u8 {
    match role {
        Role::Floor => 0,
        Role::Palisade => 1,
        Role::Peer => 2,
        Role::Reference => 3,
    }
}

/// Builds the rows: ratios paired per round, ordered by area, workload (in the order
/// the cases list them), then palisade, peers, references; empty cells last in their
/// workload.
pub(crate) fn rows(cases: &[Case], samples: &[Samples], gaps: &[Gap]) -> Vec<Row> {
    let floor_of = |floor: Floor| {
        cases
            .iter()
            .position(|c| c.role == Role::Floor && c.floor == Some(floor))
    };
    let mut rows = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let s = &samples[i].ns;
        let floor = match (case.role, case.floor) {
            (Role::Floor, _) | (_, None) => None,
            (_, Some(f)) => floor_of(f).map(|j| (f, paired_ratio(s, &samples[j].ns))),
        };
        let best = if case.role == Role::Floor {
            None
        } else {
            cases
                .iter()
                .enumerate()
                .filter(|(_, c)| {
                    c.role == Role::Peer && c.area == case.area && c.workload == case.workload
                })
                .min_by(|a, b| median(&samples[a.0].ns).total_cmp(&median(&samples[b.0].ns)))
                .map(|(j, c)| (c.label, paired_ratio(s, &samples[j].ns)))
        };
        let scaling = case.scales.and_then(|single| {
            cases
                .iter()
                .position(|c| c.area == case.area && c.workload == single && c.label == case.label)
                .map(|j| paired_ratio(&samples[j].ns, s))
        });
        rows.push(Row {
            area: case.area,
            workload: case.workload,
            label: case.label,
            role: case.role,
            note: case.note,
            stats: Some(Stats {
                median: median(s),
                p25: quantile(s, 0.25),
                p75: quantile(s, 0.75),
                rounds: s.len(),
                floor,
                best,
                scaling,
            }),
        });
    }
    for gap in gaps {
        rows.push(Row {
            area: gap.area,
            workload: gap.workload,
            label: gap.label,
            role: Role::Peer,
            note: gap.why,
            stats: None,
        });
    }
    // Stable sort: area order, then first appearance of the workload, then role.
    let workload_rank = |row: &Row| {
        rows.iter()
            .position(|r| r.area == row.area && r.workload == row.workload)
            .unwrap_or(usize::MAX)
    };
    let area_rank = |area: &str| AREAS.iter().position(|a| *a == area).unwrap_or(usize::MAX);
    let mut keyed: Vec<(usize, usize, u8, bool, Row)> = rows
        .iter()
        .map(|r| {
            (
                area_rank(r.area),
                workload_rank(r),
                role_rank(r.role),
                r.stats.is_none(),
                r.clone(),
            )
        })
        .collect();
    keyed.sort_by_key(|k| (k.0, k.1, k.3, k.2));
    keyed.into_iter().map(|k| k.4).collect()
}

/// ns/op with a sensible number of digits.
pub(crate) fn ns(v: f64) -> String {
    if !v.is_finite() {
        "?".into()
    } else if v < 10.0 {
        format!("{v:.2}")
    } else if v < 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.0}")
    }
}

/// A ratio with a sensible number of digits.
pub(crate) fn ratio(v: f64) -> String {
    if !v.is_finite() {
        "?".into()
    } else if v < 10.0 {
        format!("{v:.2}")
    } else if v < 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.0}")
    }
}

fn cells(row: &Row) -> [String; 6] {
    let who = match row.role {
        Role::Palisade => format!("**{}**", row.label),
        Role::Reference => format!("{} (reference)", row.label),
        _ => row.label.to_owned(),
    };
    match &row.stats {
        None => [
            who,
            "—".into(),
            "".into(),
            "".into(),
            "".into(),
            format!("empty: {}", row.note),
        ],
        Some(s) => {
            let floor = s
                .floor
                .map(|(f, r)| format!("{} ({})", ratio(r), f.name()))
                .unwrap_or_default();
            let best = match (row.role, s.best) {
                (Role::Floor, _) | (_, None) => String::new(),
                (_, Some((_, r))) => ratio(r),
            };
            let mut note = row.note.to_owned();
            if let Some(scaling) = s.scaling {
                let scaled = format!("{}× one thread's throughput", ratio(scaling));
                note = if note.is_empty() {
                    scaled
                } else {
                    format!("{scaled}; {note}")
                };
            }
            [
                who,
                ns(s.median),
                format!("{}–{}", ns(s.p25), ns(s.p75)),
                floor,
                best,
                note,
            ]
        }
    }
}

/// The table for the console: one block per area.
pub(crate) fn console(rows: &[Row]) -> String {
    let mut out = String::new();
    let head = [
        "workload",
        "implementation",
        "ns/op",
        "IQR",
        "× floor",
        "× best peer",
    ];
    let widths = [30, 32, 9, 15, 13, 11];
    let mut area = "";
    let mut workload = "";
    for row in rows {
        if row.area != area {
            area = row.area;
            workload = "";
            let _ = writeln!(out, "\n== {area} ==");
            let line: Vec<String> = head
                .iter()
                .zip(widths)
                .map(|(h, w)| format!("{h:<w$}"))
                .collect();
            let _ = writeln!(out, "{}", line.join(" ").trim_end());
        }
        let c = cells(row);
        let shown = if row.workload == workload {
            ""
        } else {
            row.workload
        };
        workload = row.workload;
        let label = c[0].replace("**", "");
        let text = [
            shown.to_owned(),
            label,
            c[1].clone(),
            c[2].clone(),
            c[3].clone(),
            c[4].clone(),
        ];
        let line: Vec<String> = text
            .iter()
            .zip(widths)
            .enumerate()
            .map(|(i, (t, w))| {
                if (2..=5).contains(&i) {
                    format!("{t:>w$}")
                } else {
                    format!("{t:<w$}")
                }
            })
            .collect();
        let mut line = line.join(" ");
        if row.stats.is_none() {
            line = format!("{}  {}", line.trim_end(), c[5]);
        } else if let Some(s) = row.stats.as_ref().and_then(|s| s.scaling) {
            line = format!("{}  {}× one thread", line.trim_end(), ratio(s));
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
    out
}

/// Where and when the run happened, for the report's header.
#[derive(Debug, Clone)]
pub(crate) struct RunInfo {
    /// UTC date and time.
    pub(crate) date: String,
    /// CPU model, cores, kernel.
    pub(crate) machine: String,
    /// `rustc --version`.
    pub(crate) rustc: String,
    /// The command that reproduces the run.
    pub(crate) command: String,
    /// Rounds and batch length.
    pub(crate) settings: String,
    /// `(crate, version)` of palisade's crates and the peers, from Cargo.lock.
    pub(crate) versions: Vec<(String, String)>,
}

/// One callgrind count.
#[derive(Debug, Clone)]
pub(crate) struct Count {
    /// The case.
    pub(crate) area: &'static str,
    /// The workload.
    pub(crate) workload: &'static str,
    /// The implementation.
    pub(crate) label: &'static str,
    /// Palisade or not.
    pub(crate) role: Role,
    /// Instructions per operation.
    pub(crate) per_op: f64,
}

/// `report.md`.
pub(crate) fn markdown(rows: &[Row], info: &RunInfo, counts: &[Count], callgrind: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# Palisade benchmarks\n");
    let _ = writeln!(
        out,
        "Measured {} on {} with {}.\n\nCommand: `{}` ({}).\n",
        info.date, info.machine, info.rustc, info.command, info.settings
    );
    let _ = writeln!(
        out,
        "Every case runs in batches of back-to-back operations; each round runs one batch \
         of every case in a freshly shuffled order, so all cases share the machine's \
         conditions. *ns/op* is the median over rounds and *IQR* its interquartile range. \
         *× floor* and *× best peer* are medians of ratios taken within each round (side \
         by side), so machine drift cancels out. Async cases await the operation in a loop \
         on a current-thread tokio runtime; the *await* floor is that loop around a bare \
         call. Two-thread rows give wall time per operation of both threads together, and \
         their throughput relative to one thread.\n"
    );
    let mut area = "";
    for row in rows {
        if row.area != area {
            area = row.area;
            let _ = writeln!(
                out,
                "\n## {area}\n\n| workload | implementation | ns/op | IQR | × floor | × best peer | note |\n| --- | --- | ---: | ---: | ---: | ---: | --- |"
            );
        }
        let c = cells(row);
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} |",
            row.workload,
            c[0],
            c[1],
            c[2],
            c[3],
            c[4],
            c[5].replace('|', "\\|")
        );
    }
    let _ = writeln!(out, "\n## Instructions per operation (callgrind)\n");
    if counts.is_empty() {
        let _ = writeln!(out, "{callgrind}");
    } else {
        let _ = writeln!(
            out,
            "Counted with `valgrind --tool=callgrind` around the measured loop only, as the \
             difference between two batch sizes (so set-up and the loop's entry cancel out). \
             Repeatable on a noisy machine.\n\n| workload | implementation | instructions/op |\n| --- | --- | ---: |"
        );
        for c in counts {
            let who = if c.role == Role::Palisade {
                format!("**{}**", c.label)
            } else {
                c.label.to_owned()
            };
            let _ = writeln!(
                out,
                "| {}: {} | {} | {:.0} |",
                c.area, c.workload, who, c.per_op
            );
        }
    }
    let _ = writeln!(out, "\n## Versions\n\n| crate | version |\n| --- | --- |");
    for (name, version) in &info.versions {
        let _ = writeln!(out, "| {name} | {version} |");
    }
    out
}

fn xml(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The chart: each measured row's ratio to its floor, on a log scale, grouped by
/// area; palisade's bars in green.
pub(crate) fn svg(rows: &[Row], info: &RunInfo) -> String {
    let plotted: Vec<(&Row, f64, f64)> = rows
        .iter()
        .filter(|r| r.role != Role::Floor)
        .filter_map(|r| {
            let s = r.stats.as_ref()?;
            let (_, x) = s.floor?;
            Some((r, x, s.median))
        })
        .collect();
    let label_w = 430.0;
    let bar_w = 440.0;
    let row_h = 18.0;
    let top = 58.0;
    let max = plotted.iter().map(|p| p.1).fold(10.0_f64, f64::max);
    let min = plotted.iter().map(|p| p.1).fold(1.0_f64, f64::min);
    // The axis spans whole decades from below the smallest ratio to above the largest.
    let low = min.max(1e-6).log10().floor();
    let decades = (max.log10().ceil() - low).max(1.0);
    let x_of = |v: f64| label_w + bar_w * ((v.max(1e-6).log10() - low) / decades);
    let mut areas: Vec<&str> = plotted.iter().map(|p| p.0.area).collect();
    areas.dedup();
    let height = top + row_h * (plotted.len() + areas.len()) as f64 + 40.0;
    let width = label_w + bar_w + 150.0;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        out,
        r##"<rect width="100%" height="100%" fill="#ffffff"/>
<text x="10" y="20" font-size="15" font-weight="bold">Cost relative to the floor (log scale): lower is better</text>
<text x="10" y="38" fill="#555">{} · {} · palisade in green, peers in grey · rows without a floor: see report.md</text>"##,
        xml(&info.date),
        xml(&info.machine)
    );
    // Grid: one line per decade.
    let grid_bottom = height - 30.0;
    for d in 0..=(decades as i32) {
        let v = 10f64.powi(low as i32 + d);
        let x = x_of(v);
        let _ = writeln!(
            out,
            r##"<line x1="{x:.1}" y1="{top}" x2="{x:.1}" y2="{grid_bottom}" stroke="#dddddd"/><text x="{x:.1}" y="{:.1}" text-anchor="middle" fill="#555">×{v}</text>"##,
            grid_bottom + 14.0
        );
    }
    let mut y = top;
    let mut area = "";
    for (row, x, median) in &plotted {
        if row.area != area {
            area = row.area;
            y += row_h;
            let _ = writeln!(
                out,
                r#"<text x="10" y="{:.1}" font-weight="bold">{}</text>"#,
                y - 4.0,
                xml(area)
            );
        }
        let (fill, weight) = match row.role {
            Role::Palisade => ("#2f7d4f", "bold"),
            Role::Reference => ("#c4c8ce", "normal"),
            _ => ("#8a8f98", "normal"),
        };
        let label = format!("{} · {}", row.workload, row.label);
        let end = x_of(*x);
        let _ = writeln!(
            out,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="end" font-weight="{weight}">{}</text><rect x="{label_w}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{fill}"/><text x="{:.1}" y="{:.1}" fill="#333">×{} · {} ns</text>"##,
            label_w - 8.0,
            y + row_h - 5.0,
            xml(&label),
            y + 2.0,
            (end - label_w).max(1.0),
            row_h - 4.0,
            end + 4.0,
            y + row_h - 5.0,
            ratio(*x),
            ns(*median)
        );
        y += row_h;
    }
    let _ = writeln!(out, "</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(median: f64) -> Stats {
        Stats {
            median,
            p25: median,
            p75: median,
            rounds: 3,
            floor: Some((Floor::Await, 2.0)),
            best: Some(("peer", 1.0)),
            scaling: None,
        }
    }

    fn info() -> RunInfo {
        RunInfo {
            date: "2026-01-01 00:00 UTC".into(),
            machine: "test <machine>".into(),
            rustc: "rustc".into(),
            command: "cargo xtask bench".into(),
            settings: "3 rounds".into(),
            versions: vec![("tokio".into(), "1".into())],
        }
    }

    #[test]
    fn markdown_and_svg_render_rows_and_gaps() {
        let rows = vec![
            Row {
                area: "breaker",
                workload: "closed",
                label: "palisade-breaker",
                role: Role::Palisade,
                note: "",
                stats: Some(stats(20.0)),
            },
            Row {
                area: "breaker",
                workload: "closed",
                label: "peer",
                role: Role::Peer,
                note: "a|b",
                stats: Some(stats(40.0)),
            },
            Row {
                area: "breaker",
                workload: "closed",
                label: "other",
                role: Role::Peer,
                note: "cannot",
                stats: None,
            },
        ];
        let md = markdown(&rows, &info(), &[], "not counted");
        assert!(md.contains("| closed | **palisade-breaker** | 20.0 |"));
        assert!(md.contains("a\\|b"));
        assert!(md.contains("empty: cannot"));
        let svg = svg(&rows, &info());
        assert!(svg.starts_with("<svg"));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("test &lt;machine&gt;"));
        assert_eq!(svg.matches("<rect x=").count(), 2);
        assert!(console(&rows).contains("palisade-breaker"));
    }

    #[test]
    fn numbers_keep_three_significant_digits() {
        assert_eq!(ns(1.234), "1.23");
        assert_eq!(ns(12.34), "12.3");
        assert_eq!(ns(1234.5), "1234");
        assert_eq!(ratio(f64::NAN), "?");
    }
}
