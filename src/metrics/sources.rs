//! Families read at scrape time from state the metrics core does not own (the allocator,
//! the task registry, the runtime). Whoever owns the state adds a [`Source`]; the core only
//! keeps the list, so it depends on none of them.

use std::fmt;
use std::ptr::null_mut;
use std::sync::atomic::AtomicPtr;
use std::sync::atomic::Ordering::{AcqRel, Acquire};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;

/// Families whose samples are read when `/metrics` is scraped, encoded after the catalog's
/// families. Write each family's descriptor with
/// [`DescriptorEncoder::encode_descriptor`] (names get the `pinchpoint_` prefix), then its
/// samples.
pub trait Source: Sync + 'static {
    /// Writes this source's families and samples.
    fn encode(&self, enc: &mut DescriptorEncoder<'_>) -> fmt::Result;
}

/// Room for this many sources; pinchpoint's probes take one.
const SLOTS: usize = 16;

static ADDED: [AtomicPtr<&'static dyn Source>; SLOTS] = [const { AtomicPtr::new(null_mut()) }; SLOTS];

/// Adds `source` to every exposition from now on, after the sources added before it; adding
/// the same one again changes nothing. Returns false when all slots are taken.
///
/// Lock- and allocation-free, so even a global allocator may call it. The double reference
/// is what makes that possible: a `static` holding the trait object gives it one address.
///
/// ```
/// use pinchpoint::metrics::{self, Source};
/// use prometheus_client::encoding::DescriptorEncoder;
/// use prometheus_client::metrics::MetricType;
///
/// struct QueueDepth;
///
/// impl Source for QueueDepth {
///     fn encode(&self, enc: &mut DescriptorEncoder<'_>) -> std::fmt::Result {
///         let depth: i64 = 3; // read from the queue at scrape time
///         enc.encode_descriptor("demo_queue_depth", "Jobs waiting.", None, MetricType::Gauge)?
///             .encode_gauge(&depth)
///     }
/// }
///
/// static QUEUE_DEPTH: &dyn Source = &QueueDepth;
/// assert!(metrics::add_source(&QUEUE_DEPTH));
/// assert!(metrics::encode().contains("pinchpoint_demo_queue_depth 3"));
/// ```
pub fn add_source(source: &'static &'static dyn Source) -> bool {
    let ptr = source as *const &'static dyn Source as *mut &'static dyn Source;
    for slot in &ADDED {
        match slot.compare_exchange(null_mut(), ptr, AcqRel, Acquire) {
            Ok(_) => return true,
            Err(taken) if taken == ptr => return true,
            Err(_) => {}
        }
    }
    false
}

/// The registry's view of the added sources, in the order they were added.
#[derive(Debug)]
pub(super) struct Sources;

impl Collector for Sources {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        for slot in &ADDED {
            let ptr = slot.load(Acquire);
            if ptr.is_null() {
                break; // slots fill in order
            }
            // SAFETY: every non-null slot holds a pointer made from a `&'static` in `add_source`.
            let source: &'static dyn Source = unsafe { *ptr };
            source.encode(&mut enc)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::metrics::MetricType;

    use super::*;

    struct Fixed(&'static str);

    impl Source for Fixed {
        fn encode(&self, enc: &mut DescriptorEncoder<'_>) -> fmt::Result {
            enc.encode_descriptor(self.0, "A test source.", None, MetricType::Gauge)?.encode_gauge(&1i64)
        }
    }

    static FIRST: &dyn Source = &Fixed("sources_test_first");
    static SECOND: &dyn Source = &Fixed("sources_test_second");

    #[test]
    fn sources_appear_once_each_in_the_order_added() {
        assert!(add_source(&FIRST));
        assert!(add_source(&SECOND));
        assert!(add_source(&FIRST), "adding again is fine");
        let text = crate::metrics::encode();
        assert_eq!(text.matches("# TYPE pinchpoint_sources_test_first gauge").count(), 1, "{text}");
        let first = text.find("pinchpoint_sources_test_first 1").expect("first source");
        let second = text.find("pinchpoint_sources_test_second 1").expect("second source");
        assert!(first < second);
    }
}
