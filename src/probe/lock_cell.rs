//! The heap block behind each blocking probe lock: the per-instance counters ([`Local`]) next
//! to the lock word and the value.
//!
//! Under contention the lock's cache line moves between cores with every change of holder. With
//! the counters in a block of their own, every change of holder moved two lines (the median
//! two-thread slowdown against parking_lot fell from 1.9x to 1.4x when they were put together).
//! Laid out together (aligned to a cache line), bookkeeping writes a line the acquisition
//! already owns. The block never moves, so scrapes can read its counters through a registered
//! pointer.

use std::mem::ManuallyDrop;
use std::ptr::NonNull;

use super::lock_meta::Local;

#[repr(C, align(64))]
pub(crate) struct Block<L: ?Sized> {
    pub local: Local,
    pub lock: L,
}

/// Owns a [`Block`] whose `local` is registered with its name for as long as the block lives.
pub(crate) struct Pinned<L: ?Sized>(NonNull<Block<L>>);

// SAFETY: `Pinned` owns its block like a `Box`; `Local` is `Send + Sync`.
unsafe impl<L: ?Sized + Send> Send for Pinned<L> {}
// SAFETY: as above; shared access hands out `&L` and `&Local` only.
unsafe impl<L: ?Sized + Sync> Sync for Pinned<L> {}

impl<L> Pinned<L> {
    pub fn new(name: &'static str, lock: L) -> Self {
        let block = NonNull::from(Box::leak(Box::new(Block { local: Local::new(name), lock })));
        // SAFETY: the block stays put until `Drop`/`into_inner` unregister it and free it.
        unsafe { block.as_ref().local.register() };
        Self(block)
    }

    pub fn into_inner(self) -> L {
        let me = ManuallyDrop::new(self);
        me.local.unregister();
        // SAFETY: the block came from `Box::leak`; `me` is never used or dropped again.
        let block = unsafe { Box::from_raw(me.0.as_ptr()) };
        block.lock
    }
}

impl<L: ?Sized> Pinned<L> {
    /// The lock, for exclusive access through `&mut self` (no guard, no counting).
    pub fn lock_mut(&mut self) -> &mut L {
        // SAFETY: `&mut self` owns the block; scrapes only read `local`, a different field.
        unsafe { &mut (*self.0.as_ptr()).lock }
    }
}

impl<L: ?Sized> std::ops::Deref for Pinned<L> {
    type Target = Block<L>;
    #[inline]
    fn deref(&self) -> &Block<L> {
        // SAFETY: the block is alive while `self` is.
        unsafe { self.0.as_ref() }
    }
}

impl<L: ?Sized> Drop for Pinned<L> {
    fn drop(&mut self) {
        self.local.unregister();
        // SAFETY: the block came from `Box::leak` and is freed once, here.
        drop(unsafe { Box::from_raw(self.0.as_ptr()) });
    }
}
