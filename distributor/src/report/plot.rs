//! The lab report's plots, drawn with plotters' SVG backend: axes with ticks, tick labels and
//! units, legends with the names users type.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::Ipv4Addr,
};

use plotters::{
    prelude::*,
    style::text_anchor::{HPos, Pos, VPos},
};

use crate::{
    lab::{LabReport, TreeNode},
    phone::Mode,
    report::PhoneTime,
};

/// A plotting failure (plotters' error, as text).
pub type PlotError = String;

/// A drawing area of an SVG plot.
type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;

fn err<E: std::fmt::Debug>(e: E) -> PlotError {
    format!("plotting: {e:?}")
}

const FONT: &str = "sans-serif";

mod tree;
#[cfg(test)]
use tree::MAX_W;
pub use tree::{Layout, layout, trees};

/// A stable colour per series: tab10, as matplotlib users know it. The lab's modes take the
/// first three ([`cdf_series`]); other systems on the same CDF take the next ones.
pub fn color(k: usize) -> RGBColor {
    const TAB10: [(u8, u8, u8); 8] = [
        (31, 119, 180),
        (255, 127, 14),
        (44, 160, 44),
        (148, 103, 189),
        (140, 86, 75),
        (227, 119, 194),
        (127, 127, 127),
        (23, 190, 207),
    ];
    let (r, g, b) = TAB10[k % TAB10.len()];
    RGBColor(r, g, b)
}

/// A mode's colour, the same in every plot.
fn mode_color(m: crate::peers::System) -> RGBColor {
    use crate::peers::System;
    match m {
        System::Pfs(Mode::Traditional) => color(0),
        System::Pfs(Mode::StoreAndForward) => color(1),
        System::Pfs(Mode::Pipelined) => color(2),
        System::Udpcast => color(3),
        System::Bittorrent => color(4),
        System::Uftp => color(5),
    }
}

/// A tick label without trailing zeros: 0.5, 1, 2.5, 10, 200.
pub fn tick(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let a = v.abs();
    let s = if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        format!("{v:.1}")
    } else if a >= 0.01 {
        format!("{v:.3}")
    } else {
        format!("{v:.1e}")
    };
    if s.contains('.') && !s.contains('e') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    }
}

/// One line of a completion CDF: a run of the lab, or another system's run on the same site
/// (label it as users name it, colour it with [`color`]`(3 + k)`).
#[derive(Debug, Clone)]
pub struct CdfSeries {
    pub label: String,
    /// Completion times of the phones that finished (s).
    pub times_s: Vec<f64>,
    /// Phones that took part (finished or not): the CDF ends below 100 % when some failed.
    pub total: usize,
    pub color: RGBColor,
}

pub fn cdf_series(runs: &[LabReport]) -> Vec<CdfSeries> {
    runs.iter()
        .map(|r| CdfSeries {
            label: r.mode.to_string(),
            times_s: r.completions.clone(),
            total: r.phones as usize,
            color: mode_color(r.mode),
        })
        .collect()
}

/// Whether times spanning `lo..hi` need a log axis to be told apart.
fn wants_log(series: &[CdfSeries]) -> bool {
    let medians: Vec<f64> = series
        .iter()
        .filter(|s| !s.times_s.is_empty())
        .map(|s| {
            let mut t = s.times_s.clone();
            t.sort_by(f64::total_cmp);
            t[t.len() / 2]
        })
        .collect();
    let lo = medians.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = medians.iter().copied().fold(0.0, f64::max);
    lo > 0.0 && hi / lo >= 5.0
}

/// Completion-time CDF of every series on one plot; a log time axis when they differ by
/// about an order of magnitude.
pub fn cdf(series: &[CdfSeries]) -> Result<String, PlotError> {
    let all = || series.iter().flat_map(|s| s.times_s.iter().copied());
    let tmax = all().fold(0.0, f64::max).max(1e-3);
    let tmin = all().fold(f64::INFINITY, f64::min).min(tmax);
    let log = wants_log(series);
    // Room above 100 % for the legend, a row per series: with every system of `--peers` the
    // legend no longer sits on the curves' tops.
    let ymax = 108.0 + 8.0 * series.len().max(3) as f64;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (800, 480)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let caption = "Completion time of every phone, per run";
        let steps = |s: &CdfSeries| -> Vec<(f64, f64)> {
            let mut t = s.times_s.clone();
            t.sort_by(f64::total_cmp);
            let n = s.total.max(1) as f64;
            let mut pts = Vec::with_capacity(2 * t.len() + 1);
            let mut prev = 0.0;
            for (i, x) in t.iter().enumerate() {
                let y = 100.0 * (i + 1) as f64 / n;
                pts.push((*x, prev));
                pts.push((*x, y));
                prev = y;
            }
            // Each line ends at its last install: below 100 % when phones never finished.
            pts
        };
        macro_rules! draw {
            ($chart:expr, $xdesc:expr) => {{
                let mut chart = $chart;
                chart
                    .configure_mesh()
                    .x_desc($xdesc)
                    .x_labels(12)
                    .y_desc("phones with a verified load (%)")
                    .x_label_formatter(&|v| tick(*v))
                    // Above 100 % is room for the legend, not data.
                    .y_label_formatter(&|v| if *v <= 100.0 { tick(*v) } else { String::new() })
                    .max_light_lines(1)
                    .label_style((FONT, 13))
                    .axis_desc_style((FONT, 14))
                    .draw()
                    .map_err(err)?;
                for s in series {
                    let c = s.color;
                    let label = format!("{} ({}/{} phones)", s.label, s.times_s.len(), s.total);
                    chart
                        .draw_series(LineSeries::new(steps(s), c.stroke_width(2)))
                        .map_err(err)?
                        .label(label)
                        .legend(move |(x, y)| {
                            PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2))
                        });
                }
                chart
                    .configure_series_labels()
                    .position(SeriesLabelPosition::UpperMiddle)
                    .label_font((FONT, 13))
                    .background_style(WHITE.mix(0.9))
                    .border_style(BLACK)
                    .draw()
                    .map_err(err)?;
            }};
        }
        let builder = |root| {
            let mut b = ChartBuilder::on(root);
            b.caption(caption, (FONT, 18))
                .margin(12)
                .x_label_area_size(45)
                .y_label_area_size(60);
            b
        };
        if log {
            let lo = 10f64.powf((tmin * 0.8).log10().floor());
            let hi = tmax * 1.3;
            let chart = builder(&root)
                .build_cartesian_2d((lo..hi).log_scale(), 0f64..ymax)
                .map_err(err)?;
            draw!(chart, "completion time since boot (s, log scale)");
        } else {
            let chart = builder(&root)
                .build_cartesian_2d(0f64..tmax * 1.05, 0f64..ymax)
                .map_err(err)?;
            draw!(chart, "completion time since boot (s)");
        }
        root.present().map_err(err)?;
    }
    Ok(svg)
}

/// Throughput (Mbit/s) between consecutive samples, at each interval's midpoint.
pub fn throughput(samples: &[crate::report::WanSample]) -> Vec<(f64, f64)> {
    samples
        .windows(2)
        .filter(|w| w[1].t_s > w[0].t_s)
        .map(|w| {
            let dt = w[1].t_s - w[0].t_s;
            let bits = w[1].tx_bytes.saturating_sub(w[0].tx_bytes) as f64 * 8.0;
            ((w[0].t_s + w[1].t_s) / 2.0, bits / dt / 1e6)
        })
        .collect()
}

/// The panel height per run in the stacked plots.
const PANEL_H: u32 = 260;

/// WAN throughput over time against the link rate, one panel per run (each its own time axis).
pub fn wan(runs: &[LabReport]) -> Result<String, PlotError> {
    let mut svg = String::new();
    {
        let n = runs.len().max(1);
        let root =
            SVGBackend::with_string(&mut svg, (800, PANEL_H * n as u32 + 10)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        for (area, r) in root.split_evenly((n, 1)).iter().zip(runs) {
            let pts = throughput(&r.wan_samples);
            let tmax = pts
                .iter()
                .map(|p| p.0)
                .fold(r.makespan_s, f64::max)
                .max(0.1);
            let tmin = pts.iter().map(|p| p.0).fold(0.0, f64::min);
            // Headroom above the rate for the legend.
            let ymax = pts.iter().map(|p| p.1).fold(r.wan_mbit, f64::max) * 1.5;
            let mb = r.wan_link_bytes as f64 / 1e6;
            let mut chart = ChartBuilder::on(area)
                .caption(
                    format!(
                        "{}: WAN throughput (hq to site), {mb:.1} MB in {:.1} s",
                        r.mode, r.makespan_s
                    ),
                    (FONT, 16),
                )
                .margin(10)
                .x_label_area_size(40)
                .y_label_area_size(60)
                .build_cartesian_2d(tmin..tmax * 1.02, 0f64..ymax.max(1.0))
                .map_err(err)?;
            chart
                .configure_mesh()
                .x_desc("time since boot (s)")
                .y_desc("Mbit/s")
                .max_light_lines(1)
                .x_label_formatter(&|v| tick(*v))
                .y_label_formatter(&|v| tick(*v))
                .label_style((FONT, 12))
                .axis_desc_style((FONT, 13))
                .draw()
                .map_err(err)?;
            let c = mode_color(r.mode);
            if pts.is_empty() {
                chart
                    .draw_series(std::iter::once(Text::new(
                        "no samples of the WAN counter in this run",
                        (tmin + (tmax - tmin) * 0.3, ymax / 2.0),
                        (FONT, 14),
                    )))
                    .map_err(err)?;
            } else {
                chart
                    .draw_series(LineSeries::new(pts, c.stroke_width(2)))
                    .map_err(err)?
                    .label("measured, per 100 ms")
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2))
                    });
            }
            let rate = r.wan_mbit;
            chart
                .draw_series(DashedLineSeries::new(
                    vec![(tmin, rate), (tmax * 1.02, rate)],
                    6,
                    4,
                    BLACK.stroke_width(1),
                ))
                .map_err(err)?
                .label(format!("WAN rate {} Mbit/s", tick(rate)))
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK));
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .label_font((FONT, 12))
                .background_style(WHITE.mix(0.9))
                .border_style(BLACK)
                .draw()
                .map_err(err)?;
        }
        root.present().map_err(err)?;
    }
    Ok(svg)
}

/// When each phone finished, one panel per run: a bar from boot to its verified install, one
/// row per phone (by address); phones that never installed are marked at the right edge.
pub fn timeline(runs: &[LabReport]) -> Result<String, PlotError> {
    let mut svg = String::new();
    {
        let n = runs.len().max(1);
        let rows = runs.iter().map(|r| r.phone_times.len()).max().unwrap_or(0);
        let panel = PANEL_H.max(80 + 4 * rows as u32).min(900);
        let root =
            SVGBackend::with_string(&mut svg, (800, panel * n as u32 + 10)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        for (area, r) in root.split_evenly((n, 1)).iter().zip(runs) {
            timeline_panel(area, r)?;
        }
        root.present().map_err(err)?;
    }
    Ok(svg)
}

/// One run's panel of [`timeline`].
fn timeline_panel(area: &Area<'_>, r: &LabReport) -> Result<(), PlotError> {
    let mut phones = r.phone_times.clone();
    phones.sort_by_key(|p| p.phone);
    let tmax = phones
        .iter()
        .filter_map(|p| p.installed_s)
        .fold(r.makespan_s, f64::max)
        .max(0.1);
    let count = phones.len().max(1);
    let addrs: Vec<Ipv4Addr> = phones.iter().map(|p| p.phone).collect();
    let failed = phones.iter().filter(|p| p.installed_s.is_none()).count();
    let mut chart = ChartBuilder::on(area)
        .caption(
            format!(
                "{}: when each phone installed ({} of {})",
                r.mode,
                phones.len() - failed,
                phones.len()
            ),
            (FONT, 16),
        )
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(95)
        .build_cartesian_2d(0f64..tmax * 1.45, -0.5f64..count as f64 - 0.5)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("time since boot (s)")
        .y_desc("phone")
        .max_light_lines(1)
        .x_label_formatter(&|v| tick(*v))
        .y_labels(count.min(12))
        .y_label_formatter(&|v| {
            let i = v.round();
            if (v - i).abs() < 0.01 && i >= 0.0 {
                addrs
                    .get(i as usize)
                    .map_or(String::new(), |a| a.to_string())
            } else {
                String::new()
            }
        })
        .label_style((FONT, 11))
        .axis_desc_style((FONT, 13))
        .draw()
        .map_err(err)?;
    timeline_bars(&mut chart, &phones, count)?;
    timeline_marks(&mut chart, &phones, tmax)?;
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font((FONT, 11))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    Ok(())
}

type Chart<'a, 'b> = ChartContext<
    'a,
    SVGBackend<'b>,
    Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
>;

/// A bar from boot to install per phone of `phones` (row = index), one colour per model.
fn timeline_bars(
    chart: &mut Chart<'_, '_>,
    phones: &[PhoneTime],
    count: usize,
) -> Result<(), PlotError> {
    let models: BTreeSet<&str> = phones.iter().map(|p| p.model.as_str()).collect();
    let half = 0.4f64.min(0.45 * (1.0 - 1.0 / count as f64) + 0.05);
    for (k, model) in models.iter().enumerate() {
        let c = color(k + 3);
        chart
            .draw_series(phones.iter().enumerate().filter_map(|(i, p)| {
                let t = p.installed_s?;
                (p.model == *model).then(|| {
                    Rectangle::new(
                        [(0.0, i as f64 - half), (t, i as f64 + half)],
                        c.mix(0.8).filled(),
                    )
                })
            }))
            .map_err(err)?
            .label(format!("{model}: boot to install"))
            .legend(move |(x, y)| Rectangle::new([(x, y - 4), (x + 16, y + 4)], c.filled()));
    }
    Ok(())
}

/// Crosses at the right edge (`tmax`) for phones that never installed, triangles for phones
/// that fell back to the origin.
fn timeline_marks(
    chart: &mut Chart<'_, '_>,
    phones: &[PhoneTime],
    tmax: f64,
) -> Result<(), PlotError> {
    let failed = phones.iter().filter(|p| p.installed_s.is_none()).count();
    if failed > 0 {
        chart
            .draw_series(
                phones
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| p.installed_s.is_none())
                    .map(|(i, _)| Cross::new((tmax * 1.04, i as f64), 4, RED.stroke_width(2))),
            )
            .map_err(err)?
            .label("never installed")
            .legend(|(x, y)| Cross::new((x + 8, y), 4, RED.stroke_width(2)));
    }
    let with_fallback = phones.iter().filter(|p| p.fallbacks > 0).count();
    if with_fallback > 0 {
        chart
            .draw_series(
                phones
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| p.fallbacks > 0)
                    .map(|(i, p)| {
                        TriangleMarker::new(
                            (p.installed_s.unwrap_or(tmax), i as f64),
                            4,
                            BLACK.filled(),
                        )
                    }),
            )
            .map_err(err)?
            .label("fell back to the origin")
            .legend(|(x, y)| TriangleMarker::new((x + 8, y), 4, BLACK.filled()));
    }
    Ok(())
}

/// The run whose trees the report draws: the last peer-sharing run, else the last run.
pub fn tree_run(runs: &[LabReport]) -> Option<&LabReport> {
    runs.iter()
        .rfind(|r| r.mode.mode().is_some_and(|m| m != Mode::Traditional))
        .or(runs.last())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(last: u8, parent: Option<u8>, depth: u8, role: &str) -> TreeNode {
        TreeNode {
            phone: Ipv4Addr::new(198, 19, 0, last),
            parent: parent.map(|p| Ipv4Addr::new(198, 19, 0, p)),
            depth,
            role: role.into(),
        }
    }

    #[test]
    fn children_sit_under_their_parent_and_edges_do_not_cross() {
        // A binary tree listed in a scrambled order, plus one phone that fell back.
        let nodes = vec![
            node(7, Some(3), 2, "member"),
            node(2, Some(1), 1, "member"),
            node(9, None, 0, "fallback"),
            node(5, Some(2), 2, "member"),
            node(1, None, 0, "root"),
            node(3, Some(1), 1, "member"),
            node(4, Some(2), 2, "member"),
            node(6, Some(3), 2, "member"),
        ];
        let l = layout(&nodes);
        assert_eq!(l.pos.len(), nodes.len());
        let p = |i: u8| l.pos[&Ipv4Addr::new(198, 19, 0, i)];
        assert_eq!(p(1).1, 0);
        assert_eq!(p(2).1, 1);
        assert_eq!(p(4).1, 2);
        // Parent centred over its children.
        assert_eq!(p(2).0, (p(4).0 + p(5).0) / 2.0);
        assert_eq!(p(1).0, (p(2).0 + p(3).0) / 2.0);
        // Subtrees do not interleave: all of 2's subtree left of all of 3's.
        assert!(p(4).0.max(p(5).0) < p(6).0.min(p(7).0));
        // The fallback phone sits apart, right of the tree.
        assert!(p(9).0 > p(7).0 && p(9).1 == 0);
    }

    #[test]
    fn huge_hierarchies_fit_and_traditional_runs_say_there_is_no_tree() {
        // 1500 phones: 750 leaves, too many for full labels in 30,000 px.
        let nodes: Vec<TreeNode> = (0..1500usize)
            .map(|i| TreeNode {
                phone: Ipv4Addr::from(0xC613_0002 + i as u32),
                parent: (i > 0).then(|| Ipv4Addr::from(0xC613_0002 + (i as u32 - 1) / 2)),
                depth: (usize::BITS - (i + 1).leading_zeros() - 1) as u8,
                role: if i == 0 { "root" } else { "member" }.into(),
            })
            .collect();
        let mut r = LabReport::default();
        r.trees.insert("M/f".into(), nodes.clone());
        let svg = trees(Some(&r), None).unwrap();
        let width: u32 = svg
            .split("width=\"")
            .nth(1)
            .and_then(|w| w.split('"').next())
            .and_then(|w| w.parse().ok())
            .unwrap();
        assert!(width <= MAX_W as u32 + 40, "{width}");
        assert!(
            svg.contains(">\n1.0\n<") || svg.contains("1.0\n"),
            "short labels"
        );
        for n in r.trees.get_mut("M/f").unwrap() {
            n.role = "traditional".into();
            n.parent = None;
        }
        r.mode = Mode::Traditional.into();
        let svg = trees(Some(&r), None).unwrap();
        assert!(svg.contains("no peer tree"));
    }

    #[test]
    fn ticks_read_as_numbers() {
        assert_eq!(tick(0.5), "0.5");
        assert_eq!(tick(2.0), "2");
        assert_eq!(tick(2.5), "2.5");
        assert_eq!(tick(100.0), "100");
        assert_eq!(tick(0.0), "0");
        assert_eq!(tick(0.125), "0.125");
    }

    #[test]
    fn log_axis_when_runs_differ_by_an_order_of_magnitude() {
        let s = |t: f64| CdfSeries {
            label: "x".into(),
            times_s: vec![t; 3],
            total: 3,
            color: color(0),
        };
        assert!(wants_log(&[s(80.0), s(2.9)]));
        assert!(!wants_log(&[s(5.2), s(2.9)]));
    }
}
