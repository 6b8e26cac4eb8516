//! The last few values a thread used, overwritten in turn. A request path uses the same few
//! label tuples, routes and series over and over; finding them here costs a handful of
//! compares, where a map lookup would hash a key first.

/// Up to `N` values, the oldest replaced first.
#[derive(Clone, Copy)]
pub(crate) struct Recent<T: Copy, const N: usize> {
    slots: [Option<T>; N],
    next: usize,
}

impl<T: Copy, const N: usize> Recent<T, N> {
    pub(crate) const fn new() -> Self {
        Recent { slots: [None; N], next: 0 }
    }

    /// The first remembered value `pred` accepts.
    #[inline]
    pub(crate) fn find(&self, mut pred: impl FnMut(&T) -> bool) -> Option<T> {
        self.slots.iter().flatten().find(|v| pred(v)).copied()
    }

    /// Remembers `v` in place of the oldest.
    pub(crate) fn remember(&mut self, v: T) {
        self.slots[self.next] = Some(v);
        self.next = (self.next + 1) % N;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_n_and_forgets_the_oldest() {
        let mut r = Recent::<u32, 3>::new();
        assert_eq!(r.find(|_| true), None);
        for v in 1..=4 {
            r.remember(v);
        }
        assert_eq!(r.find(|&v| v == 1), None, "the oldest went first");
        for v in 2..=4 {
            assert_eq!(r.find(|&x| x == v), Some(v));
        }
    }
}
