//! Headline numbers: capacity at the SLO target, capacity ratios and the targets.

use std::collections::BTreeMap;

use serde::Serialize;

use super::stats::{interp, OverheadRow, Point, Spread};

/// Capacity: the highest offered load at which SLO attainment stays at or above target.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "kind", content = "load", rename_all = "snake_case")]
pub enum Capacity {
    /// Interpolated between the last passing and the first failing load.
    Exact(f64),
    /// Every measured load passed: capacity is at least the highest.
    AtLeast(f64),
    /// Even the lowest load failed: capacity is below it.
    Below(f64),
    NoData,
}

impl Capacity {
    pub fn load(self) -> Option<f64> {
        match self {
            Capacity::Exact(x) | Capacity::AtLeast(x) | Capacity::Below(x) => Some(x),
            Capacity::NoData => None,
        }
    }

    pub fn describe(self) -> String {
        match self {
            Capacity::Exact(x) => format!("{x:.3}"),
            Capacity::AtLeast(x) => format!("≥ {x:.3}"),
            Capacity::Below(x) => format!("< {x:.3}"),
            Capacity::NoData => "n/a".into(),
        }
    }
}

/// Capacity from (load, attainment) points: walk up from the lowest load and interpolate
/// linearly at the first crossing below `target`. Pure.
pub fn capacity(points: &[(f64, f64)], target: f64) -> Capacity {
    let mut p = points.to_vec();
    p.sort_by(|a, b| a.0.total_cmp(&b.0));
    let Some(first) = p.first() else {
        return Capacity::NoData;
    };
    if first.1 < target {
        return Capacity::Below(first.0);
    }
    for w in p.windows(2) {
        let ((l0, a0), (l1, a1)) = (w[0], w[1]);
        if a1 < target {
            let x = l0 + (a0 - target) / (a0 - a1) * (l1 - l0);
            return Capacity::Exact(x);
        }
    }
    Capacity::AtLeast(p[p.len() - 1].0)
}

/// Ratio of two capacities with its qualifier (`=`, `≥`, `≤` or unknown).
pub fn capacity_ratio(num: Capacity, den: Capacity) -> (Option<f64>, &'static str) {
    use Capacity::*;
    match (num, den) {
        (Exact(a), Exact(b)) => (Some(a / b), "="),
        (AtLeast(a), Exact(b)) | (AtLeast(a), Below(b)) | (Exact(a), Below(b)) => {
            (Some(a / b), "≥")
        }
        (Exact(a), AtLeast(b)) | (Below(a), AtLeast(b)) | (Below(a), Exact(b)) => {
            (Some(a / b), "≤")
        }
        _ => (None, "?"),
    }
}

/// Fewer machines for the same load with capacity ratio r: 1 - 1/r.
pub fn node_saving(r: f64) -> f64 {
    1.0 - 1.0 / r
}

/// The headline numbers and the targets of the issue.
#[derive(Debug, Clone, Serialize)]
pub struct Headline {
    pub slo_target: f64,
    pub capacity: BTreeMap<String, Capacity>,
    pub ratio_lags_stock: Option<f64>,
    pub ratio_qualifier: String,
    pub ratio_tuned_stock: Option<f64>,
    pub node_saving: Option<f64>,
    /// The load at which light p99 and context switches are compared (stock capacity,
    /// clamped to the measured range).
    pub reference_load: Option<f64>,
    pub light_p99_at_ref: BTreeMap<String, f64>,
    pub ctx_per_req_at_ref: BTreeMap<String, f64>,
    pub targets: Vec<Target>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Target {
    pub name: String,
    pub met: Option<bool>,
    pub detail: String,
}

fn med(s: &Option<Spread>) -> Option<f64> {
    s.map(|s| s.median)
}

pub fn headline(pts: &[Point], ov: &[OverheadRow], slo_target: f64) -> Headline {
    let load_pts: Vec<&Point> = pts.iter().filter(|p| p.sweep == "load").collect();
    let mut caps = BTreeMap::new();
    let configs: std::collections::BTreeSet<&str> =
        load_pts.iter().map(|p| p.config.as_str()).collect();
    for c in &configs {
        let xy: Vec<(f64, f64)> = load_pts
            .iter()
            .filter(|p| p.config == *c)
            .filter_map(|p| med(&p.slo).map(|a| (p.load, a)))
            .collect();
        caps.insert(c.to_string(), capacity(&xy, slo_target));
    }
    let cap = |c: &str| caps.get(c).copied().unwrap_or(Capacity::NoData);
    let (ratio, q) = capacity_ratio(cap("lags"), cap("stock"));
    let (ratio_t, _) = capacity_ratio(cap("tuned"), cap("stock"));
    let reference_load = cap("stock").load();
    let series = |c: &str, f: &dyn Fn(&Point) -> Option<f64>| -> Vec<(f64, f64)> {
        load_pts
            .iter()
            .filter(|p| p.config == c)
            .filter_map(|p| f(p).map(|v| (p.load, v)))
            .collect()
    };
    let mut light = BTreeMap::new();
    let mut ctx = BTreeMap::new();
    if let Some(x) = reference_load {
        for c in &configs {
            if let Some(v) = interp(&series(c, &|p| med(&p.light_p99)), x) {
                light.insert(c.to_string(), v);
            }
            if let Some(v) = interp(&series(c, &|p| med(&p.ctx_per_req)), x) {
                ctx.insert(c.to_string(), v);
            }
        }
    }
    let mut targets = Vec::new();
    targets.push(Target {
        name: "capacity ratio LAGS/stock ≥ 1.3".into(),
        met: ratio.map(|r| match q {
            "≥" | "=" => r >= 1.3,
            _ => false,
        }),
        detail: match ratio {
            Some(r) => format!(
                "{q} {r:.3} (LAGS {}, stock {})",
                cap("lags").describe(),
                cap("stock").describe()
            ),
            None => format!(
                "not determinable (LAGS {}, stock {})",
                cap("lags").describe(),
                cap("stock").describe()
            ),
        },
    });
    let lp = (light.get("stock"), light.get("lags"));
    targets.push(Target {
        name: "light-function p99 at the stock capacity point ≥ 2× lower with LAGS".into(),
        met: match lp {
            (Some(s), Some(l)) if s.is_finite() && l.is_finite() && *l > 0.0 => Some(s / l >= 2.0),
            _ => None,
        },
        detail: match lp {
            (Some(s), Some(l)) => format!(
                "stock {s:.2} ms vs LAGS {l:.2} ms (×{:.2}) at load {:.3}",
                s / l,
                reference_load.unwrap_or(f64::NAN)
            ),
            _ => "no data".into(),
        },
    });
    let dens: Vec<(usize, f64, f64)> = {
        let mut v = Vec::new();
        let fs: std::collections::BTreeSet<usize> = pts
            .iter()
            .filter(|p| p.sweep == "density")
            .map(|p| p.funcs)
            .collect();
        for f in fs {
            let get = |c: &str| {
                pts.iter()
                    .find(|p| p.sweep == "density" && p.funcs == f && p.config == c)
                    .and_then(|p| med(&p.ctx_per_req))
            };
            if let (Some(s), Some(l)) = (get("stock"), get("lags")) {
                v.push((f, s, l));
            }
        }
        v
    };
    let cp = (ctx.get("stock"), ctx.get("lags"));
    let mut detail = match cp {
        (Some(s), Some(l)) => format!(
            "load sweep at {:.3}: stock {s:.2}, LAGS {l:.2}",
            reference_load.unwrap_or(f64::NAN)
        ),
        _ => "load sweep: no data".into(),
    };
    for (f, s, l) in &dens {
        detail.push_str(&format!("; density F={f}: stock {s:.2}, LAGS {l:.2}"));
    }
    let mut verdicts: Vec<bool> = dens.iter().map(|(_, s, l)| l < s).collect();
    if let (Some(s), Some(l)) = cp {
        verdicts.push(l < s);
    }
    targets.push(Target {
        name: "fewer context switches per request with LAGS".into(),
        met: (!verdicts.is_empty()).then(|| verdicts.iter().all(|&b| b)),
        detail,
    });
    let ov_rows: Vec<&OverheadRow> = ov.iter().filter(|r| r.on_vs_off_pct.is_some()).collect();
    targets.push(Target {
        name: "overhead of LAGS on with no LAGS groups vs off within 1%".into(),
        met: (!ov_rows.is_empty()).then(|| {
            ov_rows
                .iter()
                .all(|r| r.on_vs_off_pct.is_some_and(|p| p.abs() <= 1.0))
        }),
        detail: ov_rows
            .iter()
            .map(|r| {
                format!(
                    "{}: {:+.2}% (noise {:.1}%)",
                    r.probe,
                    r.on_vs_off_pct.unwrap_or(f64::NAN),
                    r.noise_pct.unwrap_or(f64::NAN)
                )
            })
            .collect::<Vec<_>>()
            .join("; "),
    });
    let base_rows: Vec<&OverheadRow> = ov
        .iter()
        .filter(|r| r.off_vs_baseline_pct.is_some())
        .collect();
    if !base_rows.is_empty() {
        targets.push(Target {
            name: "overhead of the LAGS kernel (flag off) vs the baseline kernel within 1% (cross-boot)".into(),
            met: Some(
                base_rows
                    .iter()
                    .all(|r| r.off_vs_baseline_pct.is_some_and(|p| p.abs() <= 1.0)),
            ),
            detail: base_rows
                .iter()
                .map(|r| format!("{}: {:+.2}%", r.probe, r.off_vs_baseline_pct.unwrap_or(f64::NAN)))
                .collect::<Vec<_>>()
                .join("; "),
        });
    }
    Headline {
        slo_target,
        ratio_lags_stock: ratio,
        ratio_qualifier: q.into(),
        ratio_tuned_stock: ratio_t,
        node_saving: ratio.filter(|_| q == "=" || q == "≥").map(node_saving),
        reference_load,
        light_p99_at_ref: light,
        ctx_per_req_at_ref: ctx,
        capacity: caps,
        targets,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expect exact interpolation at the first crossing, and censored answers at the edges.
    #[test]
    fn capacity_interpolation() {
        let p = [(0.5, 1.0), (0.7, 0.995), (0.9, 0.95)];
        match capacity(&p, 0.99) {
            Capacity::Exact(x) => assert!((x - (0.7 + 0.005 / 0.045 * 0.2)).abs() < 1e-9, "{x}"),
            c => panic!("{c:?}"),
        }
        assert_eq!(
            capacity(&[(0.5, 0.99), (0.9, 0.999)], 0.99),
            Capacity::AtLeast(0.9)
        );
        assert_eq!(
            capacity(&[(0.9, 0.5), (0.5, 0.98)], 0.99),
            Capacity::Below(0.5)
        );
        assert_eq!(capacity(&[], 0.99), Capacity::NoData);
        // Non-monotonic: the first crossing counts.
        assert!(
            matches!(capacity(&[(0.4, 1.0), (0.5, 0.9), (0.6, 1.0)], 0.99), Capacity::Exact(x) if x < 0.5)
        );
        let (r, q) = capacity_ratio(Capacity::Exact(0.78), Capacity::Exact(0.6));
        assert!((r.unwrap() - 1.3).abs() < 1e-9 && q == "=");
        assert_eq!(
            capacity_ratio(Capacity::AtLeast(0.9), Capacity::Exact(0.6)).1,
            "≥"
        );
        assert_eq!(
            capacity_ratio(Capacity::Below(0.5), Capacity::Below(0.5)).0,
            None
        );
        assert!((node_saving(1.39) - 0.2806).abs() < 1e-3);
    }
}
