//! PNG plots: SLO attainment, response-time CDFs, context switches per request.

use std::collections::BTreeMap;
use std::path::Path;

use super::records::{Hist, HistExt, Run};
use super::stats::{Point, RdPoint, Spread};

fn register_font() -> bool {
    static OK: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *OK.get_or_init(|| {
        for p in [
            "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
            "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
        ] {
            if let Ok(bytes) = fs_err::read(p) {
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                if plotters::style::register_font(
                    "sans-serif",
                    plotters::style::FontStyle::Normal,
                    bytes,
                )
                .is_ok()
                {
                    return true;
                }
            }
        }
        false
    })
}

fn color(config: &str) -> plotters::style::RGBColor {
    match config {
        "stock" => plotters::style::RGBColor(200, 50, 50),
        "lags" => plotters::style::RGBColor(30, 100, 200),
        "tuned" => plotters::style::RGBColor(40, 150, 60),
        _ => plotters::style::RGBColor(90, 90, 90),
    }
}

type PlotResult = std::result::Result<(), Box<dyn std::error::Error>>;

/// A chart on a PNG with an `f64` y axis and an x axis of type `X` (linear or log scale).
type Chart<'a, 'b, X> = plotters::chart::ChartContext<
    'a,
    plotters::backend::BitMapBackend<'b>,
    plotters::coord::cartesian::Cartesian2d<X, plotters::coord::types::RangedCoordf64>,
>;

/// One configuration's points `(x, (low, middle, high))`: a line through the middles in
/// the configuration's colour, with a legend entry, and a vertical error bar from low to
/// high at each x, in the order of x. Generic over the x axis, so linear and log charts
/// draw alike.
fn config_series<X>(
    c: &mut Chart<'_, '_, X>,
    cfg: &str,
    pts: impl IntoIterator<Item = (f64, (f64, f64, f64))>,
) -> PlotResult
where
    X: plotters::coord::ranged1d::Ranged<ValueType = f64>,
{
    use plotters::prelude::*;
    let col = color(cfg);
    let mut xs: Vec<(f64, (f64, f64, f64))> = pts.into_iter().collect();
    xs.sort_by(|a, b| a.0.total_cmp(&b.0));
    c.draw_series(LineSeries::new(
        xs.iter().map(|(x, g)| (*x, g.1)),
        col.stroke_width(2),
    ))?
    .label(cfg)
    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], col.stroke_width(2)));
    c.draw_series(
        xs.iter()
            .map(|(x, g)| ErrorBar::new_vertical(*x, g.0, g.1, g.2, col.filled(), 8)),
    )?;
    Ok(())
}

/// The chart's legend at `pos`: a box of 90% white with a black border.
fn legend<'a, 'b: 'a, X>(
    c: &mut Chart<'a, 'b, X>,
    pos: plotters::chart::SeriesLabelPosition,
) -> PlotResult
where
    X: plotters::coord::ranged1d::Ranged<ValueType = f64>,
{
    use plotters::prelude::*;
    c.configure_series_labels()
        .position(pos)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

/// A spread as `(min, median, max)`, each times `k`.
fn scaled(s: Spread, k: f64) -> (f64, f64, f64) {
    (s.min * k, s.median * k, s.max * k)
}

fn plot_slo(path: &Path, pts: &[Point], accel: &str, target: f64) -> PlotResult {
    use plotters::prelude::*;
    let ps: Vec<&Point> = pts.iter().filter(|p| p.sweep == "load").collect();
    if ps.is_empty() {
        return Ok(());
    }
    let (lo, hi) = ps.iter().fold((f64::MAX, f64::MIN), |(a, b), p| {
        (a.min(p.load), b.max(p.load))
    });
    let ymin = ps
        .iter()
        .filter_map(|p| p.slo.map(|s| s.min))
        .fold(1.0f64, f64::min)
        .min(target)
        * 100.0;
    let ymin = (ymin - 2.0).max(0.0).floor();
    let root = BitMapBackend::new(path, (900, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut c = ChartBuilder::on(&root)
        .caption(
            format!("SLO attainment vs offered load ({accel})"),
            ("sans-serif", 22),
        )
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d((lo - 0.03)..(hi + 0.03), ymin..100.5)?;
    c.configure_mesh()
        .x_desc("offered load (fraction of the measured CPU capacity)")
        .y_desc("requests meeting the SLO (%)")
        .draw()?;
    c.draw_series(LineSeries::new(
        [(lo - 0.03, target * 100.0), (hi + 0.03, target * 100.0)],
        BLACK.mix(0.5),
    ))?
    .label(format!("target {:.1}%", target * 100.0))
    .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.mix(0.5)));
    let configs: std::collections::BTreeSet<&str> = ps.iter().map(|p| p.config.as_str()).collect();
    for cfg in configs {
        let xs = ps
            .iter()
            .filter(|p| p.config == cfg)
            .filter_map(|p| p.slo.map(|s| (p.load, scaled(s, 100.0))));
        config_series(&mut c, cfg, xs)?;
    }
    legend(&mut c, SeriesLabelPosition::LowerLeft)?;
    root.present()?;
    Ok(())
}

fn plot_cdf(path: &Path, runs: &[Run], load: f64, accel: &str) -> PlotResult {
    use plotters::prelude::*;
    let sel: Vec<&Run> = runs
        .iter()
        .filter(|r| r.sweep == "load" && (r.load - load).abs() < 1e-6)
        .collect();
    if sel.is_empty() {
        return Ok(());
    }
    let mut hists: BTreeMap<(String, bool), Hist> = BTreeMap::new();
    for r in &sel {
        hists
            .entry((r.config.clone(), false))
            .or_default()
            .merge(&r.hist_all);
        hists
            .entry((r.config.clone(), true))
            .or_default()
            .merge(&r.hist_light);
    }
    let xmax = hists
        .values()
        .flat_map(|h| h.cdf())
        .map(|p| p.0)
        .fold(1.0f64, f64::max)
        .min(1e5);
    let root = BitMapBackend::new(path, (1200, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let panels = root.split_evenly((1, 2));
    for (i, panel) in panels.iter().enumerate() {
        let light = i == 1;
        let mut c = ChartBuilder::on(panel)
            .caption(
                format!(
                    "{} requests, load {load:.2} ({accel})",
                    if light { "light-function" } else { "all" }
                ),
                ("sans-serif", 20),
            )
            .margin(12)
            .x_label_area_size(45)
            .y_label_area_size(55)
            .build_cartesian_2d((0.1f64..xmax * 1.2).log_scale(), 0f64..1.0)?;
        c.configure_mesh()
            .x_desc("response time (ms, log)")
            .y_desc("fraction of requests ≤ x")
            .draw()?;
        for ((cfg, l), h) in &hists {
            if *l != light {
                continue;
            }
            let col = color(cfg);
            let pts: Vec<(f64, f64)> = h.cdf().into_iter().map(|(x, y)| (x.max(0.1), y)).collect();
            c.draw_series(LineSeries::new(pts, col.stroke_width(2)))?
                .label(cfg.as_str())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], col.stroke_width(2))
                });
        }
        legend(&mut c, SeriesLabelPosition::LowerRight)?;
    }
    root.present()?;
    Ok(())
}

fn plot_ctx(path: &Path, pts: &[Point], accel: &str) -> PlotResult {
    use plotters::prelude::*;
    let ps: Vec<&Point> = pts
        .iter()
        .filter(|p| p.sweep == "density" && p.ctx_per_req.is_some())
        .collect();
    if ps.is_empty() {
        return Ok(());
    }
    let fmax = ps.iter().map(|p| p.funcs).max().unwrap_or(1) as f64;
    let fmin = ps.iter().map(|p| p.funcs).min().unwrap_or(1) as f64;
    let ymax = ps
        .iter()
        .filter_map(|p| p.ctx_per_req.map(|s| s.max))
        .fold(1.0f64, f64::max)
        * 1.15;
    let root = BitMapBackend::new(path, (900, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut c = ChartBuilder::on(&root)
        .caption(
            format!("context switches per request vs density ({accel})"),
            ("sans-serif", 22),
        )
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d((fmin * 0.8..fmax * 1.25).log_scale(), 0f64..ymax)?;
    c.configure_mesh()
        .x_desc("function cgroups (log)")
        .y_desc("system-wide context switches per completed request")
        .draw()?;
    let configs: std::collections::BTreeSet<&str> = ps.iter().map(|p| p.config.as_str()).collect();
    for cfg in configs {
        let xs = ps
            .iter()
            .filter(|p| p.config == cfg)
            .filter_map(|p| p.ctx_per_req.map(|s| (p.funcs as f64, scaled(s, 1.0))));
        config_series(&mut c, cfg, xs)?;
    }
    legend(&mut c, SeriesLabelPosition::UpperLeft)?;
    root.present()?;
    Ok(())
}

/// The prototype's figures for rdhashd: goodput normalised to stock's highest goodput over
/// the sweep (its "normalised to the CFS maximum"), with the bootstrap intervals as error
/// bars (the repetitions' range where a point has none), and the share of CPU time inside
/// the scheduler (the function profiler's `schedule()`, else perf's `__schedule()`), against
/// functions (× concurrency scale) per CPU.
pub(super) fn plot_rd(path: &Path, rd: &[RdPoint], cpus: u32, accel: &str) -> PlotResult {
    use plotters::prelude::*;
    // The workload scale per CPU: functions (× the concurrency scale, when it is swept).
    let per_cpu = |p: &RdPoint| p.workload() / f64::from(cpus.max(1));
    let xdesc = if rd.iter().any(|p| p.scale != 1.0) {
        "functions × concurrency scale per CPU (log)"
    } else {
        "functions per CPU (log)"
    };
    let stock_max = rd
        .iter()
        .filter(|p| p.config == "stock")
        .filter_map(|p| p.goodput.map(|g| g.median))
        .fold(0.0f64, f64::max);
    if rd.is_empty() || stock_max <= 0.0 {
        return Ok(());
    }
    let good = |p: &RdPoint| -> Option<(f64, f64, f64)> {
        let g = p.goodput?;
        let (lo, hi) = match p.ci.as_ref().and_then(|c| c.goodput) {
            Some(i) => (i.lo, i.hi),
            None => (g.min, g.max),
        };
        Some((lo / stock_max, g.median / stock_max, hi / stock_max))
    };
    let xmin = rd.iter().map(per_cpu).fold(f64::MAX, f64::min);
    let xmax = rd.iter().map(per_cpu).fold(0.0f64, f64::max);
    let gmax = rd
        .iter()
        .filter_map(good)
        .map(|g| g.2)
        .fold(1.1f64, f64::max)
        * 1.1;
    // The function profiler's share (the prototype's measurement) where the runs have it,
    // else perf's sampled share.
    let (share, source): (fn(&RdPoint) -> Option<Spread>, &str) =
        if rd.iter().any(|p| p.ftrace_share.is_some()) {
            (|p| p.ftrace_share, "ftrace function profiler")
        } else {
            (|p| p.sched_share, "perf samples")
        };
    let smax = rd
        .iter()
        .filter_map(|p| share(p).map(|s| s.max * 100.0))
        .fold(0.0f64, f64::max);
    let root = BitMapBackend::new(path, (1200, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let panels = root.split_evenly((1, if smax > 0.0 { 2 } else { 1 }));
    let configs: std::collections::BTreeSet<&str> = rd.iter().map(|p| p.config.as_str()).collect();
    let xr = || (xmin * 0.8..xmax * 1.25).log_scale();
    let mut c = ChartBuilder::on(&panels[0])
        .caption(
            format!("rdhashd goodput vs density ({accel})"),
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(55)
        .build_cartesian_2d(xr(), 0f64..gmax)?;
    c.configure_mesh()
        .x_desc(xdesc)
        .y_desc("goodput / stock's highest (95% CI)")
        .draw()?;
    for cfg in &configs {
        let xs = rd
            .iter()
            .filter(|p| p.config == *cfg)
            .filter_map(|p| good(p).map(|g| (per_cpu(p), g)));
        config_series(&mut c, cfg, xs)?;
    }
    legend(&mut c, SeriesLabelPosition::LowerRight)?;
    if smax > 0.0 {
        let mut c = ChartBuilder::on(&panels[1])
            .caption(
                format!("CPU time inside the scheduler ({accel})"),
                ("sans-serif", 20),
            )
            .margin(12)
            .x_label_area_size(45)
            .y_label_area_size(55)
            .build_cartesian_2d(xr(), 0f64..smax * 1.2)?;
        c.configure_mesh()
            .x_desc(xdesc)
            .y_desc(format!("share of all CPU time (%, {source})"))
            .draw()?;
        for cfg in &configs {
            let xs = rd
                .iter()
                .filter(|p| p.config == *cfg)
                .filter_map(|p| share(p).map(|s| (per_cpu(p), scaled(s, 100.0))));
            config_series(&mut c, cfg, xs)?;
        }
        legend(&mut c, SeriesLabelPosition::UpperLeft)?;
    }
    root.present()?;
    Ok(())
}

pub(super) fn plots(
    dir: &Path,
    runs: &[Run],
    pts: &[Point],
    rd: &[RdPoint],
    cpus: u32,
    accel: &str,
    target: f64,
) -> Vec<String> {
    let mut warnings = Vec::new();
    if !register_font() {
        warnings.push("no TrueType font found (install fonts-dejavu-core): plots skipped".into());
        return warnings;
    }
    let mut check = |name: String, r: PlotResult| {
        if let Err(e) = r {
            warnings.push(format!("plot {name}: {e}"));
        }
    };
    check(
        "slo.png".into(),
        plot_slo(&dir.join("slo.png"), pts, accel, target),
    );
    let mut loads: Vec<f64> = runs
        .iter()
        .filter(|r| r.sweep == "load")
        .map(|r| r.load)
        .collect();
    loads.sort_by(f64::total_cmp);
    loads.dedup_by(|a, b| (*a - *b).abs() < 1e-6);
    for l in loads {
        let name = format!("cdf-load-{l:.2}.png");
        check(name.clone(), plot_cdf(&dir.join(&name), runs, l, accel));
    }
    if !pts.is_empty() {
        check("ctx.png".into(), plot_ctx(&dir.join("ctx.png"), pts, accel));
    }
    if !rd.is_empty() {
        check(
            "rdhashd.png".into(),
            plot_rd(&dir.join("rdhashd.png"), rd, cpus, accel),
        );
    }
    warnings
}
