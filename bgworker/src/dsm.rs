//! Dynamic shared memory segments and message queues (`dsm`, `shm_mq`): how a backend and
//! the worker it launched pass bytes to each other.
//!
//! The usual shape: the backend creates a [`Segment`] with room for two queues, creates them
//! with [`Segment::create_queue`], launches a worker passing [`Segment::handle`] as its main
//! argument, and attaches as sender of one queue and receiver of the other. The worker
//! [`Segment::attach`]es by handle and takes the opposite ends. When either side goes away,
//! the other's `send` fails and `receive` returns `None`, instead of waiting forever.
//!
//! ```no_run
//! use bgworker::dsm::Segment;
//! let segment = Segment::create(2 * 16384)?;
//! segment.create_queue(0, 16384)?;
//! segment.create_queue(16384, 16384)?;
//! let mut to_worker = segment.sender(0, None)?;
//! to_worker.send(b"hello")?;
//! # Ok::<(), bgworker::Error>(())
//! ```

use std::marker::PhantomData;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::error::{Error, Result};
use crate::guard::guard;
use crate::pg_sys;
use crate::worker::Handle;

/// The most queues one segment holds.
///
/// ```
/// assert_eq!(bgworker::dsm::MAX_QUEUES, 16);
/// ```
pub const MAX_QUEUES: usize = 16;

/// The start of every segment this module creates: which queues exist where, so that a
/// process attaching by handle can only use real queues. Offsets count from the end of the
/// header.
#[repr(C)]
struct Header {
    magic: AtomicU64,
    queues: AtomicU32,
    _pad: u32,
    /// (offset, size) of each created queue.
    table: [[AtomicU64; 2]; MAX_QUEUES],
}

const MAGIC: u64 = 0x6267_776b_646d_7131; // "bgwkdmq1"
const HEADER: usize = std::mem::size_of::<Header>();

/// A mapped dynamic shared memory segment; detached when dropped.
///
/// ```no_run
/// // In the worker, with the handle the backend passed as main argument:
/// # let arg = 0i64;
/// let segment = bgworker::dsm::Segment::attach(arg as u32)?;
/// let mut requests = segment.receiver(0, None)?;
/// let mut replies = segment.sender(16384, None)?;
/// while let Some(message) = requests.receive()? {
///     replies.send(&message)?;
/// }
/// # Ok::<(), bgworker::Error>(())
/// ```
pub struct Segment {
    raw: *mut pg_sys::dsm_segment,
    /// Usable bytes after the header.
    size: usize,
    /// Whether this process created the segment: only the creator creates queues (before
    /// handing the segment out), so no two processes write the queue table at once.
    creator: bool,
}

impl Segment {
    /// Creates a segment with `size` usable bytes. The mapping belongs to this value, not to
    /// the current transaction: it lives until the value is dropped, whenever that is.
    pub fn create(size: usize) -> Result<Segment> {
        let total = size
            .checked_add(HEADER)
            .ok_or_else(|| Error::msg(format!("a segment of {size} bytes is too large")))?;
        // SAFETY: creating a segment; failure (no space) raises an ERROR.
        let raw = guard(|| unsafe { pg_sys::dsm_create(total, 0) })?;
        if raw.is_null() {
            return Err(Error::msg(
                "could not create a dynamic shared memory segment",
            ));
        }
        let segment = Segment {
            raw,
            size,
            creator: true,
        };
        pin(raw)?;
        let header = segment.header();
        header.queues.store(0, Ordering::Relaxed);
        header.magic.store(MAGIC, Ordering::Release);
        Ok(segment)
    }

    /// Attaches to a segment another process created with [`Segment::create`].
    pub fn attach(handle: u32) -> Result<Segment> {
        // SAFETY: attaching by handle; NULL when the segment no longer exists.
        let raw = guard(|| unsafe { pg_sys::dsm_attach(handle as pg_sys::dsm_handle) })?;
        if raw.is_null() {
            return Err(Error::msg(format!(
                "dynamic shared memory segment {handle} does not exist"
            )));
        }
        // SAFETY: a valid, attached segment.
        let total = unsafe { pg_sys::dsm_segment_map_length(raw) };
        let segment = Segment {
            raw,
            size: total.saturating_sub(HEADER),
            creator: false,
        };
        pin(raw)?;
        if total < HEADER || segment.header().magic.load(Ordering::Acquire) != MAGIC {
            return Err(Error::msg(format!(
                "dynamic shared memory segment {handle} was not created by bgworker::dsm"
            )));
        }
        Ok(segment)
    }

    /// The segment itself, for the C API (`pq_redirect_to_shm_mq`).
    pub(crate) fn raw(&self) -> *mut pg_sys::dsm_segment {
        self.raw
    }

    /// The handle another process attaches with (pass it as the worker's main argument).
    pub fn handle(&self) -> u32 {
        // SAFETY: a valid, attached segment.
        unsafe { pg_sys::dsm_segment_handle(self.raw) as u32 }
    }

    /// The segment's usable size in bytes.
    pub fn size(&self) -> usize {
        self.size
    }

    /// The first usable byte (offset 0, MAXALIGN'd): for a structure the segment's users
    /// share besides its queues.
    pub(crate) fn base(&self) -> *mut u8 {
        self.address(0) as *mut u8
    }

    /// Keeps the segment alive when every process has detached, until
    /// [`Segment::release`] (by any process, with the handle): so a request written
    /// before its worker attaches survives its writer.
    pub(crate) fn keep(&self) -> Result<()> {
        let raw = self.raw;
        // SAFETY: a valid, attached segment, pinned at most once (only `Client` calls this,
        // right after creating it).
        guard(|| unsafe { pg_sys::dsm_pin_segment(raw) })?;
        Ok(())
    }

    /// Undoes [`Segment::keep`]: the segment goes when its last process detaches.
    pub(crate) fn release(handle: u32) -> Result<()> {
        // SAFETY: unpins by handle; an ERROR (not pinned) is returned as Err.
        guard(|| unsafe { pg_sys::dsm_unpin_segment(handle as pg_sys::dsm_handle) })?;
        Ok(())
    }

    fn header(&self) -> &Header {
        // SAFETY: every segment of this module starts with a Header (its size is checked on
        // attach); its fields are atomics, shared safely between processes. The mapping is
        // page-aligned.
        unsafe { &*(pg_sys::dsm_segment_address(self.raw) as *const Header) }
    }

    fn address(&self, offset: usize) -> *mut pg_sys::shm_mq {
        // SAFETY: callers check that `offset` lies inside the usable part of the mapping.
        let byte =
            unsafe { (pg_sys::dsm_segment_address(self.raw) as *mut u8).add(HEADER + offset) };
        byte as *mut pg_sys::shm_mq
    }

    /// Creates an empty message queue of `size` bytes at `offset` (a multiple of 8, counted
    /// in the usable bytes). Queues must not overlap, and must be big enough for
    /// `shm_mq`'s bookkeeping and at least one byte of data.
    pub fn create_queue(&self, offset: usize, size: usize) -> Result<()> {
        if !self.creator {
            return Err(Error::WrongContext(
                "only the process that created a segment creates its queues".to_string(),
            ));
        }
        // SAFETY: a constant of the server.
        let minimum = unsafe { pg_sys::shm_mq_minimum_size };
        if size < minimum {
            return Err(Error::msg(format!(
                "a message queue needs at least {minimum} bytes; {size} given"
            )));
        }
        let end = offset.checked_add(size);
        if !offset.is_multiple_of(8) || end.is_none_or(|end| end > self.size) {
            return Err(Error::msg(format!(
                "queue at offset {offset} (size {size}) does not fit an aligned place in a {}-byte segment",
                self.size
            )));
        }
        let header = self.header();
        let count = header.queues.load(Ordering::Acquire) as usize;
        for entry in &header.table[..count.min(MAX_QUEUES)] {
            let (o, s) = (
                entry[0].load(Ordering::Relaxed) as usize,
                entry[1].load(Ordering::Relaxed) as usize,
            );
            if offset < o + s && o < offset + size {
                return Err(Error::msg(format!(
                    "queue at offset {offset} (size {size}) overlaps the queue at offset {o}"
                )));
            }
        }
        if count >= MAX_QUEUES {
            return Err(Error::msg(format!(
                "a segment holds at most {MAX_QUEUES} queues"
            )));
        }
        let address = self.address(offset);
        // SAFETY: `size` bytes of the segment at `address` are inside it, aligned, and no
        // other queue's (checked above).
        guard(|| unsafe { pg_sys::shm_mq_create(address.cast(), size) })?;
        header.table[count][0].store(offset as u64, Ordering::Relaxed);
        header.table[count][1].store(size as u64, Ordering::Relaxed);
        header.queues.store(count as u32 + 1, Ordering::Release);
        Ok(())
    }

    /// Makes the queue created at `offset` empty and new, for another pair of processes.
    ///
    /// # Safety
    /// No process may have the queue attached (its handles are all detached and dropped).
    pub(crate) unsafe fn recreate_queue(&self, offset: usize) -> Result<()> {
        if !self.creator {
            return Err(Error::WrongContext(
                "only the process that created a segment creates its queues".to_string(),
            ));
        }
        let header = self.header();
        let count = header.queues.load(Ordering::Acquire) as usize;
        let size = header.table[..count.min(MAX_QUEUES)]
            .iter()
            .find(|e| e[0].load(Ordering::Relaxed) as usize == offset)
            .map(|e| e[1].load(Ordering::Relaxed) as usize)
            .ok_or_else(|| Error::msg(format!("no queue at offset {offset}")))?;
        let address = self.address(offset);
        // SAFETY: the registered queue's own bytes; nobody has it attached (the contract).
        guard(|| unsafe { pg_sys::shm_mq_create(address.cast(), size) })?;
        Ok(())
    }

    /// The queue created at `offset`, or an error when there is none.
    fn queue(&self, offset: usize) -> Result<*mut pg_sys::shm_mq> {
        let header = self.header();
        let count = (header.queues.load(Ordering::Acquire) as usize).min(MAX_QUEUES);
        let found = header.table[..count].iter().any(|entry| {
            let (o, s) = (
                entry[0].load(Ordering::Relaxed) as usize,
                entry[1].load(Ordering::Relaxed) as usize,
            );
            o == offset && o.checked_add(s).is_some_and(|end| end <= self.size)
        });
        if !found {
            return Err(Error::msg(format!(
                "there is no message queue at offset {offset} of this segment"
            )));
        }
        Ok(self.address(offset))
    }

    fn attach_queue(
        &self,
        offset: usize,
        worker: Option<&Handle>,
        send: bool,
    ) -> Result<*mut pg_sys::shm_mq_handle> {
        let queue = self.queue(offset)?;
        let seg = self.raw;
        let handle = worker.map_or(std::ptr::null_mut(), |w| w.raw());
        // SAFETY: a queue created in this segment; MyProc is this process. Setting a role that
        // is already taken raises an ERROR, which guard returns. The queue handle is
        // allocated in TopMemoryContext, so that it lives as long as the Rust value (which
        // frees it with shm_mq_detach), not as long as the current transaction.
        guard(|| unsafe {
            if send {
                pg_sys::shm_mq_set_sender(queue, pg_sys::MyProc);
            } else {
                pg_sys::shm_mq_set_receiver(queue, pg_sys::MyProc);
            }
            let previous = pg_sys::CurrentMemoryContext;
            pg_sys::CurrentMemoryContext = pg_sys::TopMemoryContext;
            let attached = pg_sys::shm_mq_attach(queue, seg, handle);
            pg_sys::CurrentMemoryContext = previous;
            attached
        })
        .map_err(Error::from)
    }

    /// Attaches to the queue at `offset` as its sender. Passing the worker's handle makes a
    /// worker that never starts count as detached; the queue end borrows the handle.
    pub fn sender<'a>(&'a self, offset: usize, worker: Option<&'a Handle>) -> Result<Sender<'a>> {
        let raw = self.attach_queue(offset, worker, true)?;
        Ok(Sender {
            raw,
            broken: false,
            _segment: PhantomData,
        })
    }

    /// Attaches to the queue at `offset` as its receiver (see [`Segment::sender`]).
    pub fn receiver<'a>(
        &'a self,
        offset: usize,
        worker: Option<&'a Handle>,
    ) -> Result<Receiver<'a>> {
        let raw = self.attach_queue(offset, worker, false)?;
        Ok(Receiver {
            raw,
            _segment: PhantomData,
        })
    }
}

/// Takes the mapping away from the current resource owner (if any), so that the end of a
/// transaction never detaches it behind the `Segment`'s back; `Drop` detaches it.
fn pin(raw: *mut pg_sys::dsm_segment) -> Result<()> {
    // SAFETY: a valid, attached segment; pinning only changes who owns the mapping.
    guard(|| unsafe { pg_sys::dsm_pin_mapping(raw) })?;
    Ok(())
}

impl Drop for Segment {
    fn drop(&mut self) {
        if crate::entry::exiting() {
            // The process's exit detached every segment already (a value kept in a
            // thread-local is dropped after that).
            return;
        }
        let raw = self.raw;
        // SAFETY: detaching our own mapping; queues attached to it were dropped first (they
        // borrow the segment).
        let _ = guard(|| unsafe { pg_sys::dsm_detach(raw) });
    }
}

/// The sending end of a message queue.
///
/// ```no_run
/// # let segment = bgworker::dsm::Segment::create(16384)?;
/// let mut to_worker = segment.sender(0, None)?;
/// to_worker.send(b"work item 1")?;
/// # Ok::<(), bgworker::Error>(())
/// ```
pub struct Sender<'s> {
    raw: *mut pg_sys::shm_mq_handle,
    /// Set when a send was interrupted by an ERROR half-way: the queue then holds part of a
    /// message, and sending another would garble the stream.
    broken: bool,
    _segment: PhantomData<&'s ()>,
}

impl Sender<'_> {
    /// The queue handle, for the C API (`pq_redirect_to_shm_mq`).
    pub(crate) fn raw(&self) -> *mut pg_sys::shm_mq_handle {
        self.raw
    }

    /// Sends one message, waiting while the queue is full. An error when the receiver has
    /// detached (or never attached and its worker stopped).
    pub fn send(&mut self, message: &[u8]) -> Result<()> {
        if self.broken {
            return Err(Error::WrongContext(
                "an earlier send on this queue was interrupted half-way; the queue cannot be \
                 used any more"
                    .to_string(),
            ));
        }
        let (raw, len, data) = (
            self.raw,
            message.len(),
            message.as_ptr() as *const std::ffi::c_void,
        );
        // SAFETY: an attached handle; the message outlives the call, which copies it.
        #[cfg(pg14)]
        let r = guard(|| unsafe { pg_sys::shm_mq_send(raw, len, data, false) });
        #[cfg(not(pg14))]
        // SAFETY: as above.
        let r = guard(|| unsafe { pg_sys::shm_mq_send(raw, len, data, false, true) });
        self.broken = r.is_err();
        let r = r?;
        match r {
            pg_sys::shm_mq_result_SHM_MQ_SUCCESS => Ok(()),
            _ => Err(Error::msg(
                "the receiving process has detached from the message queue",
            )),
        }
    }
}

impl Drop for Sender<'_> {
    fn drop(&mut self) {
        if crate::entry::exiting() {
            return;
        }
        let raw = self.raw;
        // SAFETY: detaching our end; the receiver then sees us as gone.
        let _ = guard(|| unsafe { pg_sys::shm_mq_detach(raw) });
    }
}

/// The receiving end of a message queue.
///
/// ```no_run
/// # let segment = bgworker::dsm::Segment::create(16384)?;
/// let mut from_worker = segment.receiver(0, None)?;
/// match from_worker.receive()? {
///     Some(reply) => bgworker::log!("{} bytes back", reply.len()),
///     None => bgworker::log!("the worker went away"),
/// }
/// # Ok::<(), bgworker::Error>(())
/// ```
pub struct Receiver<'s> {
    raw: *mut pg_sys::shm_mq_handle,
    _segment: PhantomData<&'s ()>,
}

/// What [`Receiver::try_receive`] found.
///
/// ```no_run
/// # let segment = bgworker::dsm::Segment::create(16384)?;
/// # let mut from_worker = segment.receiver(0, None)?;
/// use bgworker::dsm::Received;
/// match from_worker.try_receive()? {
///     Received::Message(m) => bgworker::log!("{} bytes", m.len()),
///     Received::Empty => bgworker::latch::wait(None).map(drop)?, // the sender sets our latch
///     Received::Gone => bgworker::log!("the sender detached"),
/// }
/// # Ok::<(), bgworker::Error>(())
/// ```
#[derive(Debug)]
pub enum Received {
    /// A whole message.
    Message(Vec<u8>),
    /// Nothing complete yet.
    Empty,
    /// The sender has detached (or never attached and its worker stopped).
    Gone,
}

impl Receiver<'_> {
    /// Receives one message if a whole one is there, without waiting. A sender's write
    /// sets this process's latch, so a caller can wait on the latch between tries and
    /// check meanwhile whatever else may end the wait.
    pub fn try_receive(&mut self) -> Result<Received> {
        self.receive_one(true)
    }

    /// Receives one message, waiting until one arrives. `None` when the sender has detached
    /// (or never attached and its worker stopped).
    pub fn receive(&mut self) -> Result<Option<Vec<u8>>> {
        Ok(match self.receive_one(false)? {
            Received::Message(m) => Some(m),
            Received::Empty | Received::Gone => None,
        })
    }

    /// Like [`Receiver::receive`], but looks for a message for up to `spin` before it
    /// sleeps: when the sender is expected to write soon, this saves both processes a
    /// wakeup (a signal to send, a sleep to leave), at the price of that much CPU.
    ///
    /// ```no_run
    /// # fn f(queue: &mut bgworker::dsm::Receiver<'_>) -> bgworker::Result<()> {
    /// let next = queue.receive_within(std::time::Duration::from_micros(50))?;
    /// # Ok(()) }
    /// ```
    pub fn receive_within(&mut self, spin: std::time::Duration) -> Result<Option<Vec<u8>>> {
        let found = crate::latch::spin_for(spin, || {
            Ok(match self.receive_one(true)? {
                Received::Empty => None,
                received => Some(received),
            })
        })?;
        match found {
            Some(Received::Message(m)) => Ok(Some(m)),
            Some(_) => Ok(None),
            None => self.receive(),
        }
    }

    fn receive_one(&mut self, nowait: bool) -> Result<Received> {
        let raw = self.raw;
        let mut len: pg_sys::Size = 0;
        let mut data: *mut std::ffi::c_void = std::ptr::null_mut();
        let (l, d) = (
            &mut len as *mut pg_sys::Size,
            &mut data as *mut *mut std::ffi::c_void,
        );
        // SAFETY: an attached handle; out pointers valid for the call.
        let r = guard(|| unsafe { pg_sys::shm_mq_receive(raw, l, d, nowait) })?;
        Ok(match r {
            pg_sys::shm_mq_result_SHM_MQ_SUCCESS => {
                // SAFETY: `data` points at `len` bytes valid until the next receive.
                Received::Message(
                    unsafe { std::slice::from_raw_parts(data as *const u8, len) }.to_vec(),
                )
            }
            pg_sys::shm_mq_result_SHM_MQ_WOULD_BLOCK => Received::Empty,
            _ => Received::Gone,
        })
    }
}

impl Drop for Receiver<'_> {
    fn drop(&mut self) {
        if crate::entry::exiting() {
            return;
        }
        let raw = self.raw;
        // SAFETY: detaching our end.
        let _ = guard(|| unsafe { pg_sys::shm_mq_detach(raw) });
    }
}
