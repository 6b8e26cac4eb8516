//! Label values kept for the life of the process: route templates, span names. They come
//! from a bounded set (a router's templates, the standard methods); the cap only guards
//! against a caller that makes them up.

use std::cell::Cell;
use std::collections::HashSet;
use std::sync::Mutex;

use super::Recent;

/// Most distinct values interned; past it [`intern`] answers `None`.
const CAP: usize = 1024;

/// `s` as a `&'static str`, the same one for equal strings; `None` once 1,024 values are
/// kept. Takes a global lock: callers on a hot path go through [`intern_cached`].
pub fn intern(s: &str) -> Option<&'static str> {
    static SEEN: Mutex<Option<HashSet<&'static str>>> = Mutex::new(None);
    let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
    let seen = seen.get_or_insert_with(HashSet::new);
    if let Some(k) = seen.get(s) {
        return Some(k);
    }
    if seen.len() >= CAP {
        return None;
    }
    let leaked: &'static str = Box::leak(s.to_owned().into_boxed_str());
    seen.insert(leaked);
    Some(leaked)
}

thread_local! {
    /// The values this thread interned last, by the address of the string they were interned
    /// from (a route template's `Arc<str>` stays put while its router lives).
    static RECENT: Cell<Recent<(usize, &'static str), 8>> = const { Cell::new(Recent::new()) };
}

/// [`intern`] without the lock for strings seen lately on this thread. A hit compares the
/// bytes too, so an address reused for another string is never mistaken for the old one.
pub fn intern_cached(s: &str) -> Option<&'static str> {
    let addr = s.as_ptr() as usize;
    let recent = RECENT.try_with(Cell::get).unwrap_or(Recent::new());
    if let Some((_, v)) = recent.find(|&(a, v)| a == addr && v == s) {
        return Some(v);
    }
    let v = intern(s)?;
    let _ = RECENT.try_with(|r| {
        let mut recent = r.get();
        recent.remember((addr, v));
        r.set(recent);
    });
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_strings_intern_to_one() {
        let a = intern(&String::from("/users/{id}")).unwrap();
        let b = intern_cached(&String::from("/users/{id}")).unwrap();
        assert!(std::ptr::eq(a, b));
        assert_eq!(a, "/users/{id}");
    }

    #[test]
    fn a_reused_address_with_new_bytes_is_a_miss() {
        let mut s = String::from("/a/{x}");
        let first = intern_cached(&s).unwrap();
        s.replace_range(.., "/b/{y}");
        let second = intern_cached(&s).unwrap();
        assert_eq!(first, "/a/{x}");
        assert_eq!(second, "/b/{y}");
    }
}
