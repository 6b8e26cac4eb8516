//! Client-side load balancing over counter service instances.

use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::counter::retry::random_u64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Balance {
    /// Each call to the next available instance in turn.
    #[default]
    RoundRobin,
    /// Two random available instances; the one with fewer calls in flight wins.
    PowerOfTwoChoices,
    /// The available instance with the fewest calls in flight.
    LeastLoaded,
    /// By resource id (rendezvous hashing): a key stays on one instance while that instance
    /// is available, and only the keys of an instance that leaves move.
    Hash,
}

impl std::str::FromStr for Balance {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "round-robin" => Ok(Balance::RoundRobin),
            "p2c" => Ok(Balance::PowerOfTwoChoices),
            "least-loaded" => Ok(Balance::LeastLoaded),
            "hash" => Ok(Balance::Hash),
            _ => Err(format!("{s:?}: use round-robin, p2c, least-loaded or hash")),
        }
    }
}

/// What the balancer needs to know of an instance.
pub trait Candidate {
    fn available(&self) -> bool;
    fn in_flight(&self) -> usize;
    fn id(&self) -> &str;
}

/// Picks an index into `instances`, or None when no instance is available.
pub fn pick<C: Candidate>(
    balance: Balance,
    instances: &[C],
    turn: &AtomicUsize,
    key: Option<&str>,
    avoid: Option<usize>,
) -> Option<usize> {
    let ok = |i: usize| instances[i].available() && Some(i) != avoid;
    let any = || (0..instances.len()).find(|&i| ok(i));
    match (balance, key) {
        (Balance::Hash, Some(key)) => {
            // Rendezvous: the highest hash(key, instance) among available instances.
            let hasher = std::hash::BuildHasherDefault::<std::hash::DefaultHasher>::default();
            (0..instances.len()).filter(|&i| ok(i)).max_by_key(|&i| {
                let mut h = hasher.build_hasher();
                key.hash(&mut h);
                instances[i].id().hash(&mut h);
                std::hash::Hasher::finish(&h)
            })
        }
        (Balance::LeastLoaded, _) => (0..instances.len()).filter(|&i| ok(i)).min_by_key(|&i| instances[i].in_flight()),
        (Balance::PowerOfTwoChoices, _) if instances.len() > 1 => {
            let n = instances.len();
            let a = random_u64() as usize % n;
            let b = (a + 1 + random_u64() as usize % (n - 1)) % n;
            match (ok(a), ok(b)) {
                (true, true) => Some(if instances[a].in_flight() <= instances[b].in_flight() { a } else { b }),
                (true, false) => Some(a),
                (false, true) => Some(b),
                (false, false) => any(),
            }
        }
        _ => {
            let n = instances.len();
            let start = turn.fetch_add(1, Ordering::Relaxed);
            (0..n).map(|k| (start + k) % n).find(|&i| ok(i))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct I(&'static str, bool, usize);
    impl Candidate for I {
        fn available(&self) -> bool {
            self.1
        }
        fn in_flight(&self) -> usize {
            self.2
        }
        fn id(&self) -> &str {
            self.0
        }
    }

    #[test]
    fn round_robin_skips_unavailable() {
        let xs = [I("a", true, 0), I("b", false, 0), I("c", true, 0)];
        let t = AtomicUsize::new(0);
        let picks: Vec<_> = (0..4).map(|_| pick(Balance::RoundRobin, &xs, &t, None, None).unwrap()).collect();
        assert_eq!(picks, vec![0, 2, 2, 0]);
    }

    #[test]
    fn hash_is_sticky_and_moves_only_when_its_instance_leaves() {
        let t = AtomicUsize::new(0);
        let all = [I("a", true, 0), I("b", true, 0), I("c", true, 0)];
        let keys: Vec<String> = (0..200).map(|i| format!("key{i}")).collect();
        let first: Vec<_> = keys.iter().map(|k| pick(Balance::Hash, &all, &t, Some(k), None).unwrap()).collect();
        let again: Vec<_> = keys.iter().map(|k| pick(Balance::Hash, &all, &t, Some(k), None).unwrap()).collect();
        assert_eq!(first, again);
        assert!((0..3).all(|i| first.contains(&i)), "keys spread over all instances");
        let without_b = [I("a", true, 0), I("b", false, 0), I("c", true, 0)];
        for (k, &was) in keys.iter().zip(&first) {
            let now = pick(Balance::Hash, &without_b, &t, Some(k), None).unwrap();
            if was != 1 {
                assert_eq!(now, was, "{k} moved although its instance stayed");
            } else {
                assert_ne!(now, 1);
            }
        }
    }

    #[test]
    fn least_loaded_and_p2c_prefer_idle_instances() {
        let t = AtomicUsize::new(0);
        let xs = [I("a", true, 10), I("b", true, 0)];
        assert_eq!(pick(Balance::LeastLoaded, &xs, &t, None, None), Some(1));
        assert!((0..50).all(|_| pick(Balance::PowerOfTwoChoices, &xs, &t, None, None) == Some(1)));
        let none = [I("a", false, 0)];
        assert_eq!(pick(Balance::PowerOfTwoChoices, &none, &t, None, None), None);
    }
}
