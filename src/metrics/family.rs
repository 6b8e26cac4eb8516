//! Bounded label families.
//!
//! A family wraps prometheus-client's `Family` keyed by the catalog's label names. Label
//! values are bounded: once a label has seen [`LABEL_CAP`] distinct values, new values fold
//! into `other`, so a caller passing something unbounded (a resource id, a raw path) costs a
//! bounded amount of memory and scrape time. Looking a series up takes locks and allocates;
//! probes do it once at construction and keep the returned handle.

use std::collections::HashSet;

use parking_lot::Mutex;
use prometheus_client::encoding::EncodeMetric;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::TypedMetric;
use prometheus_client::registry::Registry;

use super::catalog::{Spec, LABEL_CAP, OTHER};

/// Label set of a family with `N` labels: `[(name, value); N]`.
pub type LabelSet<const N: usize> = [(&'static str, String); N];

/// A catalog family with `N` labels whose series are metrics of type `M`.
pub struct Fam<M, const N: usize> {
    spec: &'static Spec,
    family: Family<LabelSet<N>, M, fn() -> M>,
    seen: [Mutex<HashSet<String>>; N],
}

impl<M, const N: usize> Fam<M, N>
where
    M: EncodeMetric + TypedMetric + Clone + Send + Sync + std::fmt::Debug + 'static,
{
    /// Creates the family and registers it.
    pub(crate) fn new(spec: &'static Spec, ctor: fn() -> M, registry: &mut Registry) -> Self {
        assert_eq!(spec.labels.len(), N, "{}: label count", spec.name);
        let family: Family<LabelSet<N>, M, fn() -> M> = Family::new_with_constructor(ctor);
        match spec.unit() {
            Some(unit) => registry.register_with_unit(spec.base_name(), spec.help, unit, family.clone()),
            None => registry.register(spec.base_name(), spec.help, family.clone()),
        }
        Self { spec, family, seen: std::array::from_fn(|_| Mutex::new(HashSet::new())) }
    }

    /// The series for these label values (in the catalog's label order), created if new.
    /// Cold path: keep the handle.
    pub fn get(&self, values: [&str; N]) -> M {
        let labels: LabelSet<N> = std::array::from_fn(|i| {
            let mut seen = self.seen[i].lock();
            let v = values[i];
            let v = if seen.contains(v) {
                v
            } else if seen.len() < LABEL_CAP {
                seen.insert(v.to_string());
                v
            } else {
                OTHER
            };
            (self.spec.labels[i], v.to_string())
        });
        self.family.get_or_create_owned(&labels)
    }

    /// The catalog entry of this family.
    pub fn spec(&self) -> &'static Spec {
        self.spec
    }
}

impl<M, const N: usize> std::fmt::Debug for Fam<M, N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fam").field("name", &self.spec.name).finish()
    }
}
