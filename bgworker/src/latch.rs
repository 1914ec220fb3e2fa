//! Waiting on the process latch (`WaitLatch`, `WaitLatchOrSocket`).
//!
//! Every wait exits the process when the postmaster dies (`WL_EXIT_ON_PM_DEATH`), resets the
//! latch when it was set, and then processes pending interrupts (C's
//! `CHECK_FOR_INTERRUPTS()`), except a pending shutdown request, which it leaves for the
//! caller's loop to see through [`crate::signals::shutdown_requested`]
//! so that the worker can finish cleanly.
//!
//! ```no_run
//! use bgworker::latch::{self, Woke};
//! use std::time::Duration;
//! while !bgworker::signals::shutdown_requested() {
//!     match latch::wait(Some(Duration::from_secs(5)))? {
//!         Woke::Timeout => bgworker::log!("periodic work"),
//!         Woke::Latch | Woke::Socket => {}
//!     }
//! }
//! # Ok::<(), bgworker::Error>(())
//! ```

use std::time::Duration;

use crate::error::Result;
use crate::guard::guard;
use crate::pg_sys;
use crate::signals;

/// Why a wait returned.
///
/// ```no_run
/// use bgworker::latch::{self, Woke};
/// if latch::wait(Some(std::time::Duration::from_millis(10)))? == Woke::Timeout {
///     bgworker::log!("nothing happened");
/// }
/// # Ok::<(), bgworker::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Woke {
    /// The latch was set: a signal arrived (SIGHUP, SIGTERM) or another process called
    /// `SetLatch`.
    Latch,
    /// The timeout elapsed.
    Timeout,
    /// The socket became readable or writable.
    Socket,
}

/// The wait event shown in `pg_stat_activity.wait_event` while waiting.
///
/// ```no_run
/// use bgworker::latch::{self, WaitEvent};
/// latch::wait_for(None, None, WaitEvent::EXTENSION)?;
/// assert_eq!(WaitEvent::from_raw(WaitEvent::EXTENSION.raw()), WaitEvent::EXTENSION);
/// # Ok::<(), bgworker::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WaitEvent(u32);

impl WaitEvent {
    /// The generic `Extension` wait event (`PG_WAIT_EXTENSION`), the only one before 17.
    pub const EXTENSION: WaitEvent = WaitEvent(pg_sys::PG_WAIT_EXTENSION);

    /// A wait event shown under its own name in `pg_stat_activity.wait_event` (and listed in
    /// `pg_wait_events`) from PostgreSQL 17 on (`WaitEventExtensionNew`); [`WaitEvent::EXTENSION`]
    /// on older majors. Call it in the process that waits, after it started.
    ///
    /// ```no_run
    /// let event = bgworker::latch::WaitEvent::named(c"MyWorkerMain")?;
    /// bgworker::latch::wait_for(None, None, event)?;
    /// # Ok::<(), bgworker::Error>(())
    /// ```
    pub fn named(name: &'static std::ffi::CStr) -> Result<WaitEvent> {
        #[cfg(any(pg17, pg18))]
        {
            let ptr = name.as_ptr();
            // SAFETY: registers (or finds) the name in shared memory; raises an ERROR when the
            // name is too long or the table is full.
            let raw = guard(|| unsafe { pg_sys::WaitEventExtensionNew(ptr) })?;
            Ok(WaitEvent(raw))
        }
        #[cfg(not(any(pg17, pg18)))]
        {
            let _ = name;
            Ok(WaitEvent::EXTENSION)
        }
    }

    /// The raw `wait_event_info` value.
    pub fn raw(self) -> u32 {
        self.0
    }

    /// A wait event from its raw `wait_event_info` value.
    pub fn from_raw(raw: u32) -> WaitEvent {
        WaitEvent(raw)
    }
}

/// A socket to wait on as well as the latch.
///
/// ```no_run
/// use bgworker::latch::{self, Socket, WaitEvent, Woke};
/// # let fd = 0;
/// let socket = Socket { fd, readable: true, writable: false };
/// if latch::wait_for(None, Some(socket), WaitEvent::EXTENSION)? == Woke::Socket {
///     // read from fd without blocking
/// }
/// # Ok::<(), bgworker::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Socket {
    /// The file descriptor.
    pub fd: i32,
    /// Wake when readable.
    pub readable: bool,
    /// Wake when writable.
    pub writable: bool,
}

/// Waits for the latch to be set, or for `timeout` to pass when given.
///
/// ```no_run
/// use bgworker::latch::{self, Woke};
/// use std::time::Duration;
/// while !bgworker::signals::shutdown_requested() {
///     if latch::wait(Some(Duration::from_secs(10)))? == Woke::Timeout {
///         bgworker::log!("ten seconds passed");
///     }
/// }
/// # Ok::<(), bgworker::Error>(())
/// ```
pub fn wait(timeout: Option<Duration>) -> Result<Woke> {
    wait_for(timeout, None, WaitEvent::EXTENSION)
}

/// Waits for the latch, an optional socket condition and an optional timeout, showing
/// `event` in `pg_stat_activity` meanwhile.
///
/// ```no_run
/// use bgworker::latch::{self, Socket, WaitEvent};
/// let socket = Socket { fd: 0, readable: true, writable: false };
/// let woke = latch::wait_for(None, Some(socket), WaitEvent::EXTENSION)?;
/// # Ok::<(), bgworker::Error>(())
/// ```
pub fn wait_for(
    timeout: Option<Duration>,
    socket: Option<Socket>,
    event: WaitEvent,
) -> Result<Woke> {
    let mut events = (pg_sys::WL_LATCH_SET | pg_sys::WL_EXIT_ON_PM_DEATH) as i32;
    let timeout_ms = match timeout {
        Some(t) => {
            events |= pg_sys::WL_TIMEOUT as i32;
            i64::try_from(t.as_millis()).unwrap_or(i64::MAX)
        }
        None => -1,
    };
    let fd = match socket {
        Some(s) => {
            if s.readable {
                events |= pg_sys::WL_SOCKET_READABLE as i32;
            }
            if s.writable {
                events |= pg_sys::WL_SOCKET_WRITEABLE as i32;
            }
            s.fd
        }
        None => -1,
    };
    // SAFETY: MyLatch is this process's latch, valid for its life; the other arguments are
    // plain values. With WL_EXIT_ON_PM_DEATH the call exits the process if the postmaster
    // dies, rather than returning.
    let rc = guard(|| unsafe {
        if socket.is_some() {
            pg_sys::WaitLatchOrSocket(pg_sys::MyLatch, events, fd as _, timeout_ms as _, event.0)
        } else {
            // The process's own wait set: no set to build and tear down per wait.
            pg_sys::WaitLatch(pg_sys::MyLatch, events, timeout_ms as _, event.0)
        }
    })?;
    let woke = if rc & pg_sys::WL_LATCH_SET as i32 != 0 {
        // SAFETY: as above.
        unsafe { pg_sys::ResetLatch(pg_sys::MyLatch) };
        Woke::Latch
    } else if rc & (pg_sys::WL_SOCKET_READABLE | pg_sys::WL_SOCKET_WRITEABLE) as i32 != 0 {
        Woke::Socket
    } else {
        Woke::Timeout
    };
    if !signals::shutdown_requested() {
        check_for_interrupts()?;
    }
    Ok(woke)
}

/// Processes pending interrupts, like C's `CHECK_FOR_INTERRUPTS()`: a pending query cancel
/// comes back as an ERROR value; a pending termination ends the process (FATAL, as in C).
///
/// ```no_run
/// for _ in 0..1_000_000 {
///     bgworker::latch::check_for_interrupts()?;
/// }
/// # Ok::<(), bgworker::Error>(())
/// ```
pub fn check_for_interrupts() -> Result<()> {
    // SAFETY: InterruptPending is a sig_atomic_t flag set by signal handlers.
    if unsafe { std::ptr::read_volatile(&raw const pg_sys::InterruptPending) } != 0 {
        // SAFETY: CHECK_FOR_INTERRUPTS is valid anywhere in a backend.
        guard(|| unsafe { pg_sys::pgsys_check_for_interrupts() })?;
    }
    Ok(())
}

/// Sets this process's latch, waking a wait in progress (or making the next one return).
///
/// ```no_run
/// bgworker::latch::set();
/// ```
pub fn set() {
    // SAFETY: SetLatch on our own latch is async-signal-safe and cannot raise an ERROR.
    unsafe { pg_sys::SetLatch(pg_sys::MyLatch) };
}

/// Watches this process's latch for up to `spin` without sleeping: whether it was set
/// meanwhile (it stays set, so the next [`wait`] returns at once). A process that expects
/// to be woken soon saves the waker a signal and itself a sleep: a latch set while its
/// owner is not sleeping costs no signal.
///
/// ```no_run
/// use std::time::Duration;
/// if !bgworker::latch::spin(Duration::from_micros(50)) {
///     bgworker::latch::wait(Some(Duration::from_secs(1)))?;
/// }
/// # Ok::<(), bgworker::Error>(())
/// ```
pub fn spin(spin: Duration) -> bool {
    // SAFETY: a plain read of a server global (NULL before the process set up its latch).
    if crate::guard::check_main_thread().is_err() || unsafe { pg_sys::MyLatch }.is_null() {
        return false;
    }
    spin_for(spin, || {
        // SAFETY: MyLatch is this process's latch, valid for its life; is_set is a
        // sig_atomic_t that other processes write, read as such.
        let set = unsafe { std::ptr::read_volatile(&raw const (*pg_sys::MyLatch).is_set) } != 0;
        Ok(set.then_some(()))
    })
    .is_ok_and(|found| found.is_some())
}

/// Calls `probe` again and again for up to `spin` until it finds something, without
/// sleeping; every few tries the process lets others of its CPU run first (a spin must not
/// keep the process it waits for off the CPU).
pub(crate) fn spin_for<T>(
    spin: Duration,
    mut probe: impl FnMut() -> Result<Option<T>>,
) -> Result<Option<T>> {
    if spin.is_zero() {
        return probe();
    }
    let deadline = std::time::Instant::now() + spin;
    let mut tries = 0u32;
    loop {
        if let Some(found) = probe()? {
            return Ok(Some(found));
        }
        tries += 1;
        if tries.is_multiple_of(16) {
            // The clock is read now and then: the tries themselves are cheaper.
            if std::time::Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::yield_now();
        }
        std::hint::spin_loop();
    }
}

/// Clears this process's latch (C's `ResetLatch(MyLatch)`): wakeups before this point are
/// forgotten, so check what you wait for after it, then wait.
///
/// ```no_run
/// bgworker::latch::reset();
/// // ... look at the shared state; if there is nothing to do:
/// bgworker::latch::wait(None)?;
/// # Ok::<(), bgworker::Error>(())
/// ```
pub fn reset() {
    // SAFETY: ResetLatch on our own latch is always allowed and cannot raise an ERROR.
    unsafe { pg_sys::ResetLatch(pg_sys::MyLatch) };
}

/// A process's latch as another process can set it: which `PGPROC` it is and which process
/// owned it. Store one in shared memory ([`WakerSlot`]) so that a SQL function or another
/// worker can wake this process.
///
/// Waking checks that the `PGPROC` still belongs to the same process, so a waker of a
/// process that has exited does nothing (and returns `false`).
///
/// ```no_run
/// use bgworker::latch::Waker;
/// let me = Waker::current()?;
/// assert!(me.wake()); // sets our own latch: the next wait returns at once
/// # Ok::<(), bgworker::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Waker {
    procno: u32,
    pid: i32,
}

impl Waker {
    /// This process's latch (a worker's or a backend's).
    pub fn current() -> Result<Waker> {
        // SAFETY: plain reads of this process's globals; MyProc points into the PGPROC
        // array of ProcGlobal once the process is initialized.
        let (my_proc, global) = unsafe { (pg_sys::MyProc, pg_sys::ProcGlobal) };
        if my_proc.is_null() || global.is_null() {
            return Err(crate::Error::msg("this process has no PGPROC (yet)"));
        }
        // SAFETY: as above.
        let (first, pid) = unsafe { ((*global).allProcs, (*my_proc).pid) };
        let procno = (my_proc as usize - first as usize) / std::mem::size_of::<pg_sys::PGPROC>();
        Ok(Waker {
            procno: procno as u32,
            pid,
        })
    }

    /// The process id of the latch's owner.
    pub fn pid(self) -> i32 {
        self.pid
    }

    /// Sets the latch if its process is still the one this waker was made for; `false`
    /// if that process has exited.
    pub fn wake(self) -> bool {
        let Some(latch) = self.owned_latch() else {
            return false;
        };
        // SAFETY: a latch of the PGPROC array (see owned_latch). The owner may change
        // under us (the process exits, another takes the slot): then the latch we set
        // belongs to another process, which sees one spurious wakeup, as latches allow.
        unsafe { pg_sys::SetLatch(latch) };
        true
    }

    /// Whether the process this waker was made for still owns its latch (has not exited).
    ///
    /// ```no_run
    /// assert!(bgworker::latch::Waker::current()?.alive());
    /// # Ok::<(), bgworker::Error>(())
    /// ```
    pub fn alive(self) -> bool {
        self.owned_latch().is_some()
    }

    /// The latch of PGPROC number `procno` while its owner is this waker's process.
    fn owned_latch(self) -> Option<*mut pg_sys::Latch> {
        // SAFETY: ProcGlobal is set up before any backend or worker runs and never moves;
        // it lives in shared memory mapped at the same address in every process.
        let global = unsafe { pg_sys::ProcGlobal };
        if global.is_null() {
            return None;
        }
        // SAFETY: as above.
        let (first, count) = unsafe { ((*global).allProcs, (*global).allProcCount) };
        if self.procno >= count {
            return None;
        }
        // SAFETY: procno < allProcCount: an element of the PGPROC array. A process owns its
        // latch while it lives (it is disowned at exit); the owner's pid is read racily,
        // which is as good as any later check could be.
        unsafe {
            let latch = &raw mut (*first.add(self.procno as usize)).procLatch;
            (std::ptr::read_volatile(&raw const (*latch).owner_pid) == self.pid).then_some(latch)
        }
    }

    fn to_bits(self) -> u64 {
        (u64::from(self.procno) << 32) | u64::from(self.pid as u32)
    }

    fn from_bits(bits: u64) -> Option<Waker> {
        let pid = bits as u32 as i32;
        (pid != 0).then_some(Waker {
            procno: (bits >> 32) as u32,
            pid,
        })
    }
}

/// A place for a [`Waker`] in shared memory, read and written atomically.
///
/// ```no_run
/// use bgworker::latch::{Waker, WakerSlot};
/// use bgworker::shmem::Shared;
/// static WORKER: Shared<WakerSlot> = Shared::new(c"my_ext worker latch", WakerSlot::new);
/// // In the worker:
/// WORKER.get()?.set(Some(Waker::current()?));
/// // In a SQL function:
/// let woken = WORKER.get()?.wake();
/// # Ok::<(), bgworker::Error>(())
/// ```
#[derive(Debug, Default)]
pub struct WakerSlot(std::sync::atomic::AtomicU64);

impl WakerSlot {
    /// An empty slot.
    pub const fn new() -> WakerSlot {
        WakerSlot(std::sync::atomic::AtomicU64::new(0))
    }

    /// Stores `waker` (or empties the slot).
    pub fn set(&self, waker: Option<Waker>) {
        let bits = waker.map_or(0, Waker::to_bits);
        self.0.store(bits, std::sync::atomic::Ordering::Release);
    }

    /// The waker stored, if any.
    pub fn get(&self) -> Option<Waker> {
        Waker::from_bits(self.0.load(std::sync::atomic::Ordering::Acquire))
    }

    /// Wakes the stored waker's process; `false` if the slot is empty or it has exited.
    pub fn wake(&self) -> bool {
        self.get().is_some_and(Waker::wake)
    }
}

// SAFETY: a single atomic integer; its meaning (a PGPROC number and pid) is the same in
// every process of the server.
unsafe impl crate::shmem::PlainData for WakerSlot {}
