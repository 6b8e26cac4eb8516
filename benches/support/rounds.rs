//! Side-by-side timing for benches: every contender runs once per round, rounds interleave
//! and rotate which contender goes first, and each contender is reported beside a reference
//! with the min / median / max of the per-round ratios. On a shared machine most rounds get
//! preempted somewhere; a ratio is only trusted with its spread, never from one round.

use std::time::Duration;

/// Rounds per comparison (`RATIO_ROUNDS` overrides).
pub fn rounds() -> usize {
    std::env::var("RATIO_ROUNDS").ok().and_then(|r| r.parse().ok()).filter(|&r| r > 0).unwrap_or(21)
}

/// Whether a comparison named `name` should run (`RATIO_ONLY=substring` picks some).
pub fn selected(name: &str) -> bool {
    std::env::var("RATIO_ONLY").map_or(true, |only| name.contains(&only))
}

/// One contender: a label and a closure that runs `iters` operations and returns the wall time.
pub struct Contender<'a> {
    pub label: &'a str,
    pub run: Box<dyn Fn(u64) -> Duration + 'a>,
}

pub fn contender<'a>(label: &'a str, run: impl Fn(u64) -> Duration + 'a) -> Contender<'a> {
    Contender { label, run: Box::new(run) }
}

/// ns per operation of each contender, per round: `out[contender][round]`.
pub fn measure(iters: u64, contenders: &[Contender<'_>]) -> Vec<Vec<f64>> {
    let rounds = rounds();
    let n = contenders.len();
    let mut out = vec![Vec::with_capacity(rounds); n];
    // One untimed pass warms caches, thread-locals and lazily built state.
    for c in contenders {
        (c.run)(iters.div_ceil(10).max(1));
    }
    for round in 0..rounds {
        for k in 0..n {
            let i = (round + k) % n;
            let d = (contenders[i].run)(iters);
            out[i].push(d.as_nanos() as f64 / iters as f64);
        }
    }
    out
}

/// `(min, median, max)` of `v`.
pub fn spread(v: &[f64]) -> (f64, f64, f64) {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    (s[0], s[s.len() / 2], s[s.len() - 1])
}

/// Measures `contenders` side by side and prints, for each, its ns/op spread and the spread
/// of its per-round ratio to `contenders[reference]` (below 1.00: faster than the reference).
/// Returns the per-round ns/op, for callers that derive more.
pub fn compare(name: &str, iters: u64, reference: usize, contenders: &[Contender<'_>]) -> Option<Vec<Vec<f64>>> {
    if !selected(name) {
        return None;
    }
    let ns = measure(iters, contenders);
    let reference_label = contenders[reference].label;
    println!(
        "RATIO {name}  ({} interleaved rounds of {iters} ops; ratio = contender / {reference_label}, per round)",
        rounds()
    );
    for (i, c) in contenders.iter().enumerate() {
        let (lo, med, hi) = spread(&ns[i]);
        if i == reference {
            println!("RATIO   {:<34} {med:>9.2} ns/op  (min {lo:.2}, max {hi:.2})   reference", c.label);
        } else {
            let ratios: Vec<f64> = ns[i].iter().zip(&ns[reference]).map(|(a, b)| a / b).collect();
            let (rlo, rmed, rhi) = spread(&ratios);
            println!(
                "RATIO   {:<34} {med:>9.2} ns/op  (min {lo:.2}, max {hi:.2})   ratio {rmed:.2} (min {rlo:.2}, max {rhi:.2})",
                c.label
            );
        }
    }
    Some(ns)
}
