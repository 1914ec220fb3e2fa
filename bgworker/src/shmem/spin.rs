//! A lock for short, pure-Rust critical sections over data in shared memory.
//!
//! ```no_run
//! use bgworker::shmem::{Shared, SpinLocked};
//! static COUNTS: Shared<SpinLocked<(u64, u64)>> =
//!     Shared::new(c"my_ext counts", || SpinLocked::new((0, 0)));
//! let mut counts = COUNTS.attach_late()?.lock();
//! counts.0 += 1;
//! # Ok::<(), bgworker::Error>(())
//! ```

use std::cell::UnsafeCell;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU32, Ordering};

use super::PlainData;

/// `T` behind a spinning lock that works across processes (an atomic flag in the same
/// shared memory). For a few array scans and updates, never for work that calls into
/// PostgreSQL: the guard must not outlive a handful of instructions, so nothing that can
/// wait, raise an ERROR or check for interrupts belongs inside. It needs no LWLock tranche,
/// so it also works in memory a library creates without being preloaded
/// ([`Shared::attach_late`](super::Shared::attach_late)).
///
/// ```no_run
/// use bgworker::shmem::{Shared, SpinLocked};
/// static SLOTS: Shared<SpinLocked<[u32; 8]>> =
///     Shared::new(c"my_ext slots", || SpinLocked::new([0; 8]));
/// SLOTS.attach_late()?.lock()[3] += 1;
/// # Ok::<(), bgworker::Error>(())
/// ```
pub struct SpinLocked<T> {
    locked: AtomicU32,
    value: UnsafeCell<T>,
}

impl<T: PlainData> SpinLocked<T> {
    /// An unlocked `value`.
    pub const fn new(value: T) -> SpinLocked<T> {
        SpinLocked {
            locked: AtomicU32::new(0),
            value: UnsafeCell::new(value),
        }
    }

    /// Takes the lock, spinning (then yielding the CPU) while another process holds it.
    pub fn lock(&self) -> SpinGuard<'_, T> {
        let mut spins = 0u32;
        while self
            .locked
            .compare_exchange_weak(0, 1, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            spins += 1;
            if spins.is_multiple_of(64) {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
        SpinGuard {
            lock: self,
            _not_send: std::marker::PhantomData,
        }
    }
}

// SAFETY: the value is reached only through a guard, which exists in one process at a
// time (the flag), and T is plain data, meaningful in every process.
unsafe impl<T: PlainData> Sync for SpinLocked<T> {}
// SAFETY: as above.
unsafe impl<T: PlainData> PlainData for SpinLocked<T> {}

/// Exclusive access to a [`SpinLocked`] value; unlocks when dropped (also in a panic).
///
/// ```no_run
/// # let slots = bgworker::shmem::SpinLocked::new([0u32; 8]);
/// let mut guard = slots.lock();
/// guard[0] = 1;
/// drop(guard);
/// ```
pub struct SpinGuard<'a, T> {
    lock: &'a SpinLocked<T>,
    _not_send: std::marker::PhantomData<*mut ()>,
}

impl<T> Deref for SpinGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard holds the lock.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> DerefMut for SpinGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard holds the lock exclusively.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T> Drop for SpinGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.locked.store(0, Ordering::Release);
    }
}
