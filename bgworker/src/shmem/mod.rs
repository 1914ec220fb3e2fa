//! Named structures in the main shared memory segment, and LWLocks to guard them.
//!
//! Declare a [`Shared`] (or [`SharedLock`]) as a `static`, call `request()` in `_PG_init`
//! while the library is preloaded, and use it from any process of the cluster. Requests go
//! through `shmem_request_hook` on 15+ (directly from `_PG_init` on 14), and the structure is
//! created once by `shmem_startup_hook` under `AddinShmemInitLock`.
//!
//! What you store must make sense in several processes at once: plain numbers, fixed arrays,
//! `std::sync::atomic` types (lock-free, so they work across processes), never pointers into
//! one process's memory. The [`PlainData`] bound says so at compile time: a `String`, `Vec`,
//! `Box` or `Mutex` in shared memory is refused, and structs of plain data are declared with
//! [`plain_struct!`](crate::plain_struct!).
//!
//! ```compile_fail
//! // A String's heap buffer exists in one process only: refused.
//! static NAMES: bgworker::shmem::Shared<String> =
//!     bgworker::shmem::Shared::new(c"names", String::new);
//! ```
//!
//! An LWLock guard gives access to the data only while its lock is held. A caught ERROR, like
//! a (sub)transaction that rolls back, releases every LWLock of the process
//! (`LWLockReleaseAll`, as PostgreSQL's error recovery does); a guard whose lock went that
//! way panics on access instead of handing out unprotected data (`holds_lock` tells), and
//! SQL (SPI, transactions) is refused while a guard is alive, as C code must not run queries
//! while holding an LWLock. Two structures must not share a name: the second request is
//! refused, and a structure another library created under the name with another type is
//! refused when attaching ([`Shared::per_layout`] gives each layout a copy of its own
//! instead, for a library upgraded while the server runs).
//!
//! ```no_run
//! use std::sync::atomic::{AtomicU64, Ordering};
//! use bgworker::shmem::{Shared, SharedLock};
//!
//! static HITS: Shared<AtomicU64> = Shared::new(c"my_ext hits", || AtomicU64::new(0));
//! static STATS: SharedLock<[u64; 4]> = SharedLock::new(c"my_ext stats", || [0; 4]);
//!
//! bgworker::pg_init!({
//!     HITS.request()?;
//!     STATS.request()
//! });
//! // anywhere:
//! HITS.get()?.fetch_add(1, Ordering::Relaxed);
//! STATS.exclusive()?[0] += 1;
//! # Ok::<(), bgworker::Error>(())
//! ```

mod spin;

pub use spin::{SpinGuard, SpinLocked};

use std::cell::Cell;
use std::ffi::{CStr, CString};
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{self, AtomicPtr, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use crate::error::{Error, Result};
use crate::guard::guard;
use crate::pg_sys;

/// Values that mean the same in every process of the cluster: no pointers, references, file
/// descriptors or other process-local handles, and shareable (`Sync`) through atomics or
/// immutability. [`Shared`] and [`SharedLock`] hold only such types.
///
/// Implemented for integers, floats, `bool`, `char`, the `std::sync::atomic` integer and
/// `bool` types, and arrays and tuples of these; declare structs with
/// [`plain_struct!`](crate::plain_struct!).
///
/// ```
/// fn shareable<T: bgworker::shmem::PlainData>() {}
/// shareable::<[std::sync::atomic::AtomicU64; 4]>();
/// shareable::<(i64, f64)>();
/// ```
///
/// ```compile_fail
/// fn shareable<T: bgworker::shmem::PlainData>() {}
/// shareable::<Vec<u8>>();
/// ```
///
/// # Safety
/// Implement it only for types whose every field is `PlainData` (which
/// [`plain_struct!`](crate::plain_struct!) checks for you).
pub unsafe trait PlainData: Send + Sync + 'static {}

macro_rules! plain_data {
    ($($t:ty),* $(,)?) => {
        // SAFETY: numbers, flags and lock-free atomics hold no process-local state.
        $(unsafe impl PlainData for $t {})*
    };
}
plain_data! {
    (), bool, char, u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize, f32, f64,
    atomic::AtomicBool, atomic::AtomicU8, atomic::AtomicU16, atomic::AtomicU32,
    atomic::AtomicU64, atomic::AtomicUsize, atomic::AtomicI8, atomic::AtomicI16,
    atomic::AtomicI32, atomic::AtomicI64, atomic::AtomicIsize,
}
// SAFETY: an array of plain data is plain data.
unsafe impl<T: PlainData, const N: usize> PlainData for [T; N] {}
// SAFETY: tuples of plain data are plain data.
unsafe impl<A: PlainData, B: PlainData> PlainData for (A, B) {}
// SAFETY: as above.
unsafe impl<A: PlainData, B: PlainData, C: PlainData> PlainData for (A, B, C) {}
// SAFETY: as above.
unsafe impl<A: PlainData, B: PlainData, C: PlainData, D: PlainData> PlainData for (A, B, C, D) {}

/// Declares a struct for shared memory: every field must be [`PlainData`] (checked at compile
/// time), and the struct then is too.
///
/// ```
/// use std::sync::atomic::AtomicU64;
/// bgworker::plain_struct! {
///     /// What the workers count together.
///     pub struct Counters {
///         pub jobs: AtomicU64,
///         pub failures: AtomicU64,
///         pub per_slot: [u32; 8],
///     }
/// }
/// static COUNTERS: bgworker::shmem::Shared<Counters> = bgworker::shmem::Shared::new(
///     c"my_ext counters",
///     || Counters { jobs: AtomicU64::new(0), failures: AtomicU64::new(0), per_slot: [0; 8] },
/// );
/// ```
///
/// ```compile_fail
/// bgworker::plain_struct! {
///     pub struct Names { pub first: String }
/// }
/// ```
#[macro_export]
macro_rules! plain_struct {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $($(#[$field_meta:meta])* $field_vis:vis $field:ident : $ty:ty),* $(,)?
        }
    ) => {
        $(#[$meta])*
        $vis struct $name {
            $($(#[$field_meta])* $field_vis $field: $ty),*
        }
        const _: () = {
            fn plain<T: $crate::shmem::PlainData>() {}
            #[allow(dead_code)]
            fn every_field_is_plain() {
                $(plain::<$ty>();)*
            }
        };
        // SAFETY: every field is PlainData, as the function above makes the compiler check.
        unsafe impl $crate::shmem::PlainData for $name {}
    };
}

/// What the startup hook does for one request.
trait Attach: Sync {
    fn size(&self) -> usize;
    fn name(&self) -> &CStr;
    fn lock_tranche(&self) -> Option<&'static CStr>;
    /// Called with `AddinShmemInitLock` held; `found` says whether it already existed.
    ///
    /// # Safety
    /// `ptr` points at `size()` bytes of shared memory reserved under `name()`.
    unsafe fn attach(&self, ptr: *mut u8, found: bool) -> Result<()>;
}

static REQUESTS: Mutex<Vec<&'static dyn Attach>> = Mutex::new(Vec::new());
#[cfg(not(pg14))]
static mut PREV_REQUEST_HOOK: pg_sys::shmem_request_hook_type = None;
static mut PREV_STARTUP_HOOK: pg_sys::shmem_startup_hook_type = None;

fn requests() -> Vec<&'static dyn Attach> {
    REQUESTS.lock().map(|r| r.clone()).unwrap_or_default()
}

fn add_request(request: &'static dyn Attach) -> Result<()> {
    if !crate::entry::preloading() {
        // SAFETY: a plain server global, true in every process but the postmaster.
        if unsafe { pg_sys::IsUnderPostmaster } {
            // A backend loading the library for its SQL functions, as C libraries allow:
            // nothing to request; `get` says the memory is not attached.
            return Ok(());
        }
        return Err(Error::WrongContext(format!(
            "shared memory \"{}\" can only be requested while loading shared_preload_libraries",
            request.name().to_string_lossy()
        )));
    }
    let mut list = REQUESTS
        .lock()
        .map_err(|_| Error::msg("shared memory registry poisoned"))?;
    if list.iter().any(|r| r.name() == request.name()) {
        return Err(Error::msg(format!(
            "shared memory \"{}\" is requested twice: each Shared or SharedLock needs its own name",
            request.name().to_string_lossy()
        )));
    }
    let first = list.is_empty();
    list.push(request);
    drop(list);
    if first {
        install_hooks();
    }
    #[cfg(pg14)]
    reserve(request)?;
    Ok(())
}

fn install_hooks() {
    // SAFETY: hooks are installed once, from _PG_init in the postmaster, before any other
    // process exists; we keep the previous hooks and call them first.
    unsafe {
        #[cfg(not(pg14))]
        {
            PREV_REQUEST_HOOK = pg_sys::shmem_request_hook;
            pg_sys::shmem_request_hook = Some(request_hook);
        }
        PREV_STARTUP_HOOK = pg_sys::shmem_startup_hook;
        pg_sys::shmem_startup_hook = Some(startup_hook);
    }
}

fn reserve(request: &dyn Attach) -> Result<()> {
    let size = request.size();
    // SAFETY: called during shared memory sizing (request hook, or _PG_init on 14).
    guard(|| unsafe { pg_sys::RequestAddinShmemSpace(size) })?;
    if let Some(tranche) = request.lock_tranche() {
        let name = tranche.as_ptr();
        // SAFETY: as above; the name is static.
        guard(|| unsafe { pg_sys::RequestNamedLWLockTranche(name, 1) })?;
    }
    Ok(())
}

#[cfg(not(pg14))]
extern "C" fn request_hook() {
    let body = || {
        // SAFETY: the previous hook, if any, was installed by another library.
        if let Some(prev) = unsafe { PREV_REQUEST_HOOK } {
            // SAFETY: calling the chained hook as PostgreSQL would.
            unsafe { prev() };
        }
        for request in requests() {
            reserve(request)?;
        }
        Ok(())
    };
    // SAFETY: PostgreSQL calls the hook directly; the frame owns nothing.
    unsafe { crate::entry::run(body) };
}

extern "C" fn startup_hook() {
    let body = || {
        // SAFETY: as in request_hook.
        if let Some(prev) = unsafe { PREV_STARTUP_HOOK } {
            // SAFETY: calling the chained hook as PostgreSQL would.
            unsafe { prev() };
        }
        // SAFETY: the documented lock for initialising add-in shared memory.
        let lock = unsafe { pg_sys::pgsys_addin_shmem_init_lock() };
        // SAFETY: taking that lock, released below.
        guard(|| unsafe { pg_sys::LWLockAcquire(lock, pg_sys::LWLockMode_LW_EXCLUSIVE) })?;
        let mut result = Ok(());
        for request in requests() {
            let (name, size) = (request.name().as_ptr(), request.size());
            let mut found = false;
            let found_ptr = &mut found as *mut bool;
            // SAFETY: space for `size` bytes was reserved under this name.
            match guard(|| unsafe { pg_sys::ShmemInitStruct(name, size, found_ptr) }) {
                Ok(ptr) => {
                    // SAFETY: `ptr` is the reserved area of `size` bytes.
                    if let Err(e) = unsafe { request.attach(ptr as *mut u8, found) } {
                        result = Err(e);
                        break;
                    }
                }
                Err(e) => {
                    result = Err(e.into());
                    break;
                }
            }
        }
        // SAFETY: releasing the lock taken above, unless a caught ERROR's cleanup did.
        guard(|| unsafe {
            if pg_sys::LWLockHeldByMe(lock) {
                pg_sys::LWLockRelease(lock)
            }
        })?;
        result
    };
    // SAFETY: PostgreSQL calls the hook directly; the frame owns nothing.
    unsafe { crate::entry::run(body) };
}

/// ShmemInitStruct hands out MAXALIGN'd (8-byte) space.
fn check_alignment<T>() -> Result<()> {
    if std::mem::align_of::<T>() > 8 {
        return Err(Error::msg(format!(
            "{} needs {}-byte alignment; shared memory structs get 8",
            std::any::type_name::<T>(),
            std::mem::align_of::<T>()
        )));
    }
    Ok(())
}

/// A value of type `T` in shared memory, initialised once by `init`.
///
/// ```no_run
/// use std::sync::atomic::{AtomicU64, Ordering};
/// static JOBS_DONE: bgworker::shmem::Shared<AtomicU64> =
///     bgworker::shmem::Shared::new(c"my_ext jobs done", || AtomicU64::new(0));
/// // in _PG_init: JOBS_DONE.request()?;
/// JOBS_DONE.get()?.fetch_add(1, Ordering::Relaxed);
/// # Ok::<(), bgworker::Error>(())
/// ```
pub struct Shared<T: 'static> {
    name: &'static CStr,
    /// Whether the name in shared memory carries `T`'s layout ([`Shared::per_layout`]).
    per_layout: bool,
    /// That name, made once per process.
    layout_name: OnceLock<CString>,
    init: fn() -> T,
    ptr: AtomicPtr<T>,
}

impl<T: PlainData> Shared<T> {
    /// Declares the structure; `name` must be unique in the cluster.
    pub const fn new(name: &'static CStr, init: fn() -> T) -> Shared<T> {
        Shared {
            name,
            per_layout: false,
            layout_name: OnceLock::new(),
            init,
            ptr: AtomicPtr::new(std::ptr::null_mut()),
        }
    }

    /// Declares a structure of which each layout of `T` (its type's name and its size) gets
    /// its own copy: a build of the library whose `T` differs (a newer version, loaded while
    /// the server runs and an older one's copy exists) uses a copy of its own, where
    /// [`Shared::new`]'s would be refused with an ERROR until the server restarts. For state
    /// that processes running different builds need not share, such as a pool of workers
    /// that each build starts itself. A change that keeps the type's name and size but not
    /// its meaning needs a new `name`. The name in shared memory is `name`'s first 28 bytes
    /// and a hash of `name` and `T`'s type name and size; each copy takes its size of the
    /// spare shared memory for the life of the server.
    ///
    /// ```no_run
    /// use std::sync::atomic::{AtomicU64, Ordering};
    /// static SLOTS: bgworker::shmem::Shared<[AtomicU64; 8]> =
    ///     bgworker::shmem::Shared::per_layout(c"my_ext slots", Default::default);
    /// SLOTS.attach_late()?[0].fetch_add(1, Ordering::Relaxed);
    /// # Ok::<(), bgworker::Error>(())
    /// ```
    pub const fn per_layout(name: &'static CStr, init: fn() -> T) -> Shared<T> {
        let mut shared = Shared::new(name, init);
        shared.per_layout = true;
        shared
    }

    /// The name in PostgreSQL's index of shared memory (at most 47 bytes are kept there).
    fn shmem_name(&self) -> &CStr {
        if !self.per_layout {
            return self.name;
        }
        self.layout_name.get_or_init(|| {
            let name = self.name.to_string_lossy();
            let mut end = name.len().min(28);
            while !name.is_char_boundary(end) {
                end -= 1;
            }
            let prefix = &name[..end];
            let hash = fnv1a(&format!("{name} {}", layout_of::<T>(false)));
            CString::new(format!("{prefix} {hash:016x}")).expect("no NUL in a CStr's text")
        })
    }

    /// Requests the space; call from `_PG_init` while preloading.
    pub fn request(&'static self) -> Result<()> {
        check_alignment::<T>()?;
        add_request(self)
    }

    /// The shared value, attached now if this process has not yet: created from the spare
    /// shared memory PostgreSQL keeps for libraries that are not preloaded (about 100 kB,
    /// shared by all of them) when no process created it yet. For small structures of a
    /// library loaded on demand; a preloaded library `request()`s its space instead.
    ///
    /// ```no_run
    /// use std::sync::atomic::{AtomicU64, Ordering};
    /// static CALLS: bgworker::shmem::Shared<AtomicU64> =
    ///     bgworker::shmem::Shared::new(c"my_ext calls", || AtomicU64::new(0));
    /// CALLS.attach_late()?.fetch_add(1, Ordering::Relaxed);
    /// # Ok::<(), bgworker::Error>(())
    /// ```
    pub fn attach_late(&self) -> Result<&T> {
        check_alignment::<T>()?;
        if self.ptr.load(Ordering::Acquire).is_null() {
            let (name, size) = (self.shmem_name().as_ptr(), self.size());
            // SAFETY: the documented lock for initialising add-in shared memory.
            let lock = unsafe { pg_sys::pgsys_addin_shmem_init_lock() };
            // SAFETY: taking that lock, released below.
            guard(|| unsafe { pg_sys::LWLockAcquire(lock, pg_sys::LWLockMode_LW_EXCLUSIVE) })?;
            let mut found = false;
            let found_ptr = &mut found as *mut bool;
            // SAFETY: finds or allocates `size` bytes under this name; out of space (or of
            // index entries) is an ERROR, returned.
            let result = guard(|| unsafe { pg_sys::ShmemInitStruct(name, size, found_ptr) })
                .map_err(Error::from)
                // SAFETY: `ptr` is `size` MAXALIGN'd bytes under this name, and we hold
                // AddinShmemInitLock.
                .and_then(|ptr| unsafe {
                    self.attach_as(ptr as *mut u8, found, kind_of::<T>(false))
                });
            // SAFETY: releasing the lock taken above, unless a caught ERROR's cleanup did.
            guard(|| unsafe {
                if pg_sys::LWLockHeldByMe(lock) {
                    pg_sys::LWLockRelease(lock)
                }
            })?;
            result?;
        }
        self.get()
    }

    /// The shared value; an error if it was never requested or the library was not preloaded.
    pub fn get(&self) -> Result<&T> {
        let ptr = self.ptr.load(Ordering::Acquire);
        if ptr.is_null() {
            return Err(Error::WrongContext(format!(
                "shared memory \"{}\" is not attached: request() it in _PG_init and preload the library",
                self.name.to_string_lossy()
            )));
        }
        // SAFETY: set by the startup hook to initialised shared memory that lives as long as
        // the cluster; T is Sync, so shared references from several processes are fine.
        Ok(unsafe { &*ptr })
    }
}

/// What every named structure starts with: which Rust type it holds, so that another
/// library (or version) using the same name for something else is refused instead of
/// reinterpreting the bytes.
#[repr(C)]
struct Header {
    magic: u64,
    kind: u64,
}

const HEADER: usize = std::mem::size_of::<Header>();
const MAGIC: u64 = 0x6267_776b_7368_6d31; // "bgwkshm1"

/// A fingerprint of `T` (its name and size) and of whether a lock guards it.
fn kind_of<T>(locked: bool) -> u64 {
    fnv1a(&layout_of::<T>(locked))
}

/// `T`'s type and size, and whether a lock guards it.
fn layout_of<T>(locked: bool) -> String {
    format!(
        "{} {} {locked}",
        std::any::type_name::<T>(),
        std::mem::size_of::<T>()
    )
}

/// FNV-1a: stable across processes and builds of the same code.
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

impl<T: PlainData> Shared<T> {
    /// Initialises (first process) or checks (others) the header, then the value.
    ///
    /// # Safety
    /// `ptr` points at `HEADER + size_of::<T>()` bytes of shared memory reserved under this
    /// name, MAXALIGN'd; the caller holds `AddinShmemInitLock`.
    unsafe fn attach_as(&self, ptr: *mut u8, found: bool, kind: u64) -> Result<()> {
        let header = ptr as *mut Header;
        // SAFETY: the data follows the 16-byte header, so it stays 8-byte aligned.
        let data = unsafe { ptr.add(HEADER) } as *mut T;
        if found {
            // SAFETY: the first process wrote a Header here (or another library wrote
            // something else of at least this size, which the check below refuses).
            let seen = unsafe { header.read() };
            if seen.magic != MAGIC || seen.kind != kind {
                return Err(Error::msg(format!(
                    "shared memory \"{}\" already holds something other than a {}",
                    self.name.to_string_lossy(),
                    std::any::type_name::<T>()
                )));
            }
        } else {
            // SAFETY: fresh, MAXALIGN'd space for the header and a T.
            unsafe {
                header.write(Header { magic: MAGIC, kind });
                data.write((self.init)());
            }
        }
        self.ptr.store(data, Ordering::Release);
        Ok(())
    }
}

impl<T: PlainData> Attach for Shared<T> {
    fn size(&self) -> usize {
        HEADER + std::mem::size_of::<T>().max(1)
    }
    fn name(&self) -> &CStr {
        self.shmem_name()
    }
    fn lock_tranche(&self) -> Option<&'static CStr> {
        None
    }
    unsafe fn attach(&self, ptr: *mut u8, found: bool) -> Result<()> {
        // SAFETY: forwarded from the startup hook.
        unsafe { self.attach_as(ptr, found, kind_of::<T>(false)) }
    }
}

/// A value of type `T` in shared memory behind its own LWLock (a named tranche of one lock).
///
/// ```no_run
/// static QUEUE: bgworker::shmem::SharedLock<[i64; 16]> =
///     bgworker::shmem::SharedLock::new(c"my_ext queue", || [0; 16]);
/// // in _PG_init: QUEUE.request()?;
/// QUEUE.exclusive()?[0] = 42;
/// let first = QUEUE.share()?[0];
/// # Ok::<(), bgworker::Error>(())
/// ```
pub struct SharedLock<T: 'static> {
    data: Shared<T>,
    lock: AtomicPtr<pg_sys::LWLock>,
    /// Counts this process's acquisitions, so a guard can tell its own hold of the lock
    /// from a later one (statics are per process: this is not shared).
    acquisitions: AtomicU64,
}

thread_local! {
    /// LWLock guards alive in this process.
    static GUARDS: Cell<usize> = const { Cell::new(0) };
}

/// An error while an LWLock guard is alive: SQL must not run under an LWLock (it holds off
/// interrupts, and a rollback inside the statement would release the lock under the guard).
pub(crate) fn check_no_lwlock_guard() -> Result<()> {
    let alive = GUARDS.with(Cell::get);
    if alive > 0 {
        return Err(Error::WrongContext(format!(
            "{alive} LWLock guard(s) of this process are alive: drop them before running SQL"
        )));
    }
    Ok(())
}

impl<T: PlainData> SharedLock<T> {
    /// Declares the structure; `name` names both the memory and the LWLock tranche (shown as
    /// `wait_event` while a process waits for it).
    pub const fn new(name: &'static CStr, init: fn() -> T) -> SharedLock<T> {
        SharedLock {
            data: Shared::new(name, init),
            lock: AtomicPtr::new(std::ptr::null_mut()),
            acquisitions: AtomicU64::new(0),
        }
    }

    /// Requests the space and the lock; call from `_PG_init` while preloading.
    pub fn request(&'static self) -> Result<()> {
        check_alignment::<T>()?;
        add_request(self)
    }

    fn acquire(&self, mode: pg_sys::LWLockMode) -> Result<Held<'_>> {
        self.data.get()?;
        let lock = self.lock.load(Ordering::Acquire);
        // SAFETY: the tranche's lock, set up with the data.
        if guard(|| unsafe { pg_sys::LWLockHeldByMe(lock) })? {
            // LWLocks are not reentrant: waiting for it would wait for ourselves forever.
            return Err(Error::WrongContext(format!(
                "this process already holds the LWLock of \"{}\"; drop that guard first",
                self.data.name.to_string_lossy()
            )));
        }
        // SAFETY: as above; fails only when too many LWLocks are held, which is an ERROR
        // guard returns.
        guard(|| unsafe { pg_sys::LWLockAcquire(lock, mode) })?;
        let acquisition = self.acquisitions.fetch_add(1, Ordering::Relaxed) + 1;
        GUARDS.with(|g| g.set(g.get() + 1));
        Ok(Held {
            lock,
            acquisitions: &self.acquisitions,
            acquisition,
            name: self.data.name,
            _not_send: std::marker::PhantomData,
        })
    }

    /// Takes the lock in shared mode (readers share it).
    pub fn share(&self) -> Result<ReadGuard<'_, T>> {
        let held = self.acquire(pg_sys::LWLockMode_LW_SHARED)?;
        Ok(ReadGuard {
            held,
            data: self.data.get()?,
        })
    }

    /// Takes the lock in exclusive mode.
    pub fn exclusive(&self) -> Result<WriteGuard<'_, T>> {
        let held = self.acquire(pg_sys::LWLockMode_LW_EXCLUSIVE)?;
        Ok(WriteGuard {
            held,
            data: self.data.get()? as *const T as *mut T,
            _life: std::marker::PhantomData,
        })
    }
}

/// One hold of a [`SharedLock`]'s LWLock by a guard.
struct Held<'a> {
    lock: *mut pg_sys::LWLock,
    acquisitions: &'a AtomicU64,
    acquisition: u64,
    name: &'static CStr,
    _not_send: std::marker::PhantomData<*mut ()>,
}

impl Held<'_> {
    /// Whether this guard still holds the lock: a rollback releases all LWLocks, and the
    /// same lock may have been taken again since by another guard.
    fn valid(&self) -> bool {
        // SAFETY: scans this process's list of held LWLocks; it cannot raise an ERROR, so it
        // needs no boundary (this runs on every access through a guard). Guards are !Send:
        // this is the main thread.
        let held = unsafe { pg_sys::LWLockHeldByMe(self.lock) };
        held && self.acquisitions.load(Ordering::Relaxed) == self.acquisition
    }

    fn check(&self) {
        if !self.valid() {
            panic!(
                "the LWLock of \"{}\" was released under its guard (a rollback releases every \
                 LWLock): the data is no longer protected",
                self.name.to_string_lossy()
            );
        }
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        GUARDS.with(|g| g.set(g.get().saturating_sub(1)));
        if self.valid() {
            let lock = self.lock;
            // SAFETY: releasing the lock this guard holds.
            let _ = guard(|| unsafe { pg_sys::LWLockRelease(lock) });
        } else {
            // The rollback's LWLockReleaseAll released it and left the interrupt holdoff
            // that LWLockAcquire took in place (the boundary restores it after the ERROR):
            // give that back, as LWLockRelease would have.
            // SAFETY: only decrements a counter, never below zero.
            unsafe { pg_sys::pgsys_resume_interrupts() };
        }
    }
}

impl<T: PlainData> Attach for SharedLock<T> {
    fn size(&self) -> usize {
        self.data.size()
    }
    fn name(&self) -> &CStr {
        self.data.name
    }
    fn lock_tranche(&self) -> Option<&'static CStr> {
        Some(self.data.name)
    }
    unsafe fn attach(&self, ptr: *mut u8, found: bool) -> Result<()> {
        // SAFETY: forwarded from the startup hook.
        unsafe { self.data.attach_as(ptr, found, kind_of::<T>(true)) }?;
        let name = self.data.name.as_ptr();
        // SAFETY: the tranche was requested under this name; an unknown name raises an
        // ERROR, which guard returns.
        let padded = guard(|| unsafe { pg_sys::GetNamedLWLockTranche(name) })?;
        // SAFETY: the tranche has one lock; LWLockPadded starts with the LWLock.
        self.lock
            .store(unsafe { &raw mut (*padded).lock }, Ordering::Release);
        Ok(())
    }
}

/// Shared access to a [`SharedLock`]'s value; releases the lock when dropped.
///
/// ```no_run
/// # static QUEUE: bgworker::shmem::SharedLock<[i64; 16]> =
/// #     bgworker::shmem::SharedLock::new(c"my_ext queue", || [0; 16]);
/// let total: i64 = QUEUE.share()?.iter().sum();
/// # Ok::<(), bgworker::Error>(())
/// ```
pub struct ReadGuard<'a, T> {
    held: Held<'a>,
    data: &'a T,
}

impl<T> ReadGuard<'_, T> {
    /// Whether the guard still holds its lock: a caught ERROR or a rollback releases every
    /// LWLock of the process, after which the data can no longer be reached through it.
    pub fn holds_lock(&self) -> bool {
        self.held.valid()
    }
}

impl<T> Deref for ReadGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.held.check();
        self.data
    }
}

/// Exclusive access to a [`SharedLock`]'s value; releases the lock when dropped.
///
/// ```no_run
/// # static QUEUE: bgworker::shmem::SharedLock<[i64; 16]> =
/// #     bgworker::shmem::SharedLock::new(c"my_ext queue", || [0; 16]);
/// let mut q = QUEUE.exclusive()?;
/// q[1] += 1;
/// drop(q); // released here
/// # Ok::<(), bgworker::Error>(())
/// ```
pub struct WriteGuard<'a, T> {
    held: Held<'a>,
    data: *mut T,
    _life: std::marker::PhantomData<&'a mut T>,
}

impl<T> WriteGuard<'_, T> {
    /// Whether the guard still holds its lock (see [`ReadGuard::holds_lock`]).
    pub fn holds_lock(&self) -> bool {
        self.held.valid()
    }
}

impl<T> Deref for WriteGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.held.check();
        // SAFETY: the exclusive lock is held by this guard (checked just now).
        unsafe { &*self.data }
    }
}

impl<T> DerefMut for WriteGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        self.held.check();
        // SAFETY: the exclusive lock is held by this guard (checked just now), so no other
        // process or guard accesses the data.
        unsafe { &mut *self.data }
    }
}
