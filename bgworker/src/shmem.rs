//! Named structures in the main shared memory segment, and LWLocks to guard them.
//!
//! Declare a [`Shared`] (or [`SharedLock`]) as a `static`, call `request()` in `_PG_init`
//! while the library is preloaded, and use it from any process of the cluster. Requests go
//! through `shmem_request_hook` on 15+ (directly from `_PG_init` on 14), and the structure is
//! created once by `shmem_startup_hook` under `AddinShmemInitLock`.
//!
//! What you store must make sense in several processes at once: plain numbers, fixed arrays,
//! `std::sync::atomic` types (lock-free, so they work across processes), never pointers into
//! one process's memory.
//!
//! ```ignore
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
//! ```

use std::ffi::CStr;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::Mutex;

use crate::error::{Error, Result};
use crate::guard::guard;
use crate::pg_sys;

/// What the startup hook does for one request.
trait Attach: Sync {
    fn size(&self) -> usize;
    fn name(&self) -> &'static CStr;
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
    // SAFETY: reading a plain server global in the postmaster's only thread.
    if !unsafe { pg_sys::process_shared_preload_libraries_in_progress } {
        return Err(Error::WrongContext(format!(
            "shared memory \"{}\" can only be requested while loading shared_preload_libraries",
            request.name().to_string_lossy()
        )));
    }
    let mut list = REQUESTS
        .lock()
        .map_err(|_| Error::msg("shared memory registry poisoned"))?;
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
    crate::entry::run(|| {
        // SAFETY: the previous hook, if any, was installed by another library.
        if let Some(prev) = unsafe { PREV_REQUEST_HOOK } {
            // SAFETY: calling the chained hook as PostgreSQL would.
            unsafe { prev() };
        }
        for request in requests() {
            reserve(request)?;
        }
        Ok(())
    });
}

extern "C" fn startup_hook() {
    crate::entry::run(|| {
        // SAFETY: as in request_hook.
        if let Some(prev) = unsafe { PREV_STARTUP_HOOK } {
            // SAFETY: calling the chained hook as PostgreSQL would.
            unsafe { prev() };
        }
        // SAFETY: the documented lock for initialising add-in shared memory.
        let lock = unsafe { pg_sys::pgsys_addin_shmem_init_lock() };
        guard(|| unsafe { pg_sys::LWLockAcquire(lock, pg_sys::LWLockMode_LW_EXCLUSIVE) })?;
        let mut result = Ok(());
        for request in requests() {
            let (name, size) = (request.name().as_ptr(), request.size());
            let mut found = false;
            let found_ptr = &mut found as *mut bool;
            // SAFETY: space for `size` bytes was reserved under this name.
            match guard(|| unsafe { pg_sys::ShmemInitStruct(name, size, found_ptr) }) {
                // SAFETY: `ptr` is the reserved area.
                Ok(ptr) => {
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
        // SAFETY: releasing the lock taken above.
        guard(|| unsafe { pg_sys::LWLockRelease(lock) })?;
        result
    });
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
/// ```ignore
/// use std::sync::atomic::{AtomicU64, Ordering};
/// static JOBS_DONE: bgworker::shmem::Shared<AtomicU64> =
///     bgworker::shmem::Shared::new(c"my_ext jobs done", || AtomicU64::new(0));
/// // in _PG_init: JOBS_DONE.request()?;
/// JOBS_DONE.get()?.fetch_add(1, Ordering::Relaxed);
/// ```
pub struct Shared<T: 'static> {
    name: &'static CStr,
    init: fn() -> T,
    ptr: AtomicPtr<T>,
}

impl<T: Send + Sync + 'static> Shared<T> {
    /// Declares the structure; `name` must be unique in the cluster.
    pub const fn new(name: &'static CStr, init: fn() -> T) -> Shared<T> {
        Shared {
            name,
            init,
            ptr: AtomicPtr::new(std::ptr::null_mut()),
        }
    }

    /// Requests the space; call from `_PG_init` while preloading.
    pub fn request(&'static self) -> Result<()> {
        check_alignment::<T>()?;
        add_request(self)
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

impl<T: Send + Sync + 'static> Attach for Shared<T> {
    fn size(&self) -> usize {
        std::mem::size_of::<T>().max(1)
    }
    fn name(&self) -> &'static CStr {
        self.name
    }
    fn lock_tranche(&self) -> Option<&'static CStr> {
        None
    }
    unsafe fn attach(&self, ptr: *mut u8, found: bool) -> Result<()> {
        let ptr = ptr as *mut T;
        if !found {
            // SAFETY: fresh, suitably aligned (MAXALIGN) space of size_of::<T>() bytes.
            unsafe { ptr.write((self.init)()) };
        }
        self.ptr.store(ptr, Ordering::Release);
        Ok(())
    }
}

/// A value of type `T` in shared memory behind its own LWLock (a named tranche of one lock).
///
/// ```ignore
/// static QUEUE: bgworker::shmem::SharedLock<[i64; 16]> =
///     bgworker::shmem::SharedLock::new(c"my_ext queue", || [0; 16]);
/// // in _PG_init: QUEUE.request()?;
/// QUEUE.exclusive()?[0] = 42;
/// let first = QUEUE.share()?[0];
/// ```
pub struct SharedLock<T: 'static> {
    data: Shared<T>,
    lock: AtomicPtr<pg_sys::LWLock>,
}

impl<T: Send + Sync + 'static> SharedLock<T> {
    /// Declares the structure; `name` names both the memory and the LWLock tranche (shown as
    /// `wait_event` while a process waits for it).
    pub const fn new(name: &'static CStr, init: fn() -> T) -> SharedLock<T> {
        SharedLock {
            data: Shared::new(name, init),
            lock: AtomicPtr::new(std::ptr::null_mut()),
        }
    }

    /// Requests the space and the lock; call from `_PG_init` while preloading.
    pub fn request(&'static self) -> Result<()> {
        check_alignment::<T>()?;
        add_request(self)
    }

    fn acquire(&self, mode: pg_sys::LWLockMode) -> Result<(*mut pg_sys::LWLock, &T)> {
        let data = self.data.get()?;
        let lock = self.lock.load(Ordering::Acquire);
        // SAFETY: the tranche's lock, set up with the data; fails only when too many LWLocks
        // are held, which is an ERROR guard returns.
        guard(|| unsafe { pg_sys::LWLockAcquire(lock, mode) })?;
        Ok((lock, data))
    }

    /// Takes the lock in shared mode (readers share it).
    pub fn share(&self) -> Result<ReadGuard<'_, T>> {
        let (lock, data) = self.acquire(pg_sys::LWLockMode_LW_SHARED)?;
        Ok(ReadGuard { lock, data })
    }

    /// Takes the lock in exclusive mode.
    pub fn exclusive(&self) -> Result<WriteGuard<'_, T>> {
        let (lock, data) = self.acquire(pg_sys::LWLockMode_LW_EXCLUSIVE)?;
        Ok(WriteGuard {
            lock,
            data: data as *const T as *mut T,
            _life: std::marker::PhantomData,
        })
    }
}

impl<T: Send + Sync + 'static> Attach for SharedLock<T> {
    fn size(&self) -> usize {
        self.data.size()
    }
    fn name(&self) -> &'static CStr {
        self.data.name
    }
    fn lock_tranche(&self) -> Option<&'static CStr> {
        Some(self.data.name)
    }
    unsafe fn attach(&self, ptr: *mut u8, found: bool) -> Result<()> {
        // SAFETY: forwarded from the startup hook.
        unsafe { self.data.attach(ptr, found) }?;
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
/// ```ignore
/// let total: i64 = QUEUE.share()?.iter().sum();
/// ```
pub struct ReadGuard<'a, T> {
    lock: *mut pg_sys::LWLock,
    data: &'a T,
}

impl<T> Deref for ReadGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.data
    }
}

impl<T> Drop for ReadGuard<'_, T> {
    fn drop(&mut self) {
        release(self.lock);
    }
}

/// Exclusive access to a [`SharedLock`]'s value; releases the lock when dropped.
///
/// ```ignore
/// let mut q = QUEUE.exclusive()?;
/// q[1] += 1;
/// drop(q); // released here
/// ```
pub struct WriteGuard<'a, T> {
    lock: *mut pg_sys::LWLock,
    data: *mut T,
    _life: std::marker::PhantomData<&'a mut T>,
}

impl<T> Deref for WriteGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the exclusive lock is held for the guard's life.
        unsafe { &*self.data }
    }
}

impl<T> DerefMut for WriteGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the exclusive lock is held, so no other process or guard accesses it.
        unsafe { &mut *self.data }
    }
}

impl<T> Drop for WriteGuard<'_, T> {
    fn drop(&mut self) {
        release(self.lock);
    }
}

fn release(lock: *mut pg_sys::LWLock) {
    // SAFETY: releasing a lock this guard took. If error recovery already released all
    // LWLocks, PostgreSQL raises an ERROR that we ignore.
    let _ = guard(|| unsafe { pg_sys::LWLockRelease(lock) });
}
