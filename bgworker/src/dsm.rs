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

use crate::error::{Error, Result};
use crate::guard::guard;
use crate::pg_sys;
use crate::worker::Handle;

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
    size: usize,
}

impl Segment {
    /// Creates a segment of `size` bytes. The mapping belongs to this value, not to the
    /// current transaction: it lives until the value is dropped, whenever that is.
    pub fn create(size: usize) -> Result<Segment> {
        // SAFETY: creating a segment; failure (no space) raises an ERROR.
        let raw = guard(|| unsafe { pg_sys::dsm_create(size, 0) })?;
        if raw.is_null() {
            return Err(Error::msg(
                "could not create a dynamic shared memory segment",
            ));
        }
        pin(raw)?;
        Ok(Segment { raw, size })
    }

    /// Attaches to a segment created by another process.
    pub fn attach(handle: u32) -> Result<Segment> {
        // SAFETY: attaching by handle; NULL when the segment no longer exists.
        let raw = guard(|| unsafe { pg_sys::dsm_attach(handle as pg_sys::dsm_handle) })?;
        if raw.is_null() {
            return Err(Error::msg(format!(
                "dynamic shared memory segment {handle} does not exist"
            )));
        }
        // SAFETY: a valid, attached segment.
        let size = unsafe { pg_sys::dsm_segment_map_length(raw) };
        pin(raw)?;
        Ok(Segment { raw, size })
    }

    /// The handle another process attaches with (pass it as the worker's main argument).
    pub fn handle(&self) -> u32 {
        // SAFETY: a valid, attached segment.
        unsafe { pg_sys::dsm_segment_handle(self.raw) as u32 }
    }

    /// The segment's size in bytes.
    pub fn size(&self) -> usize {
        self.size
    }

    fn queue_address(&self, offset: usize, size: usize) -> Result<*mut pg_sys::shm_mq> {
        if !offset.is_multiple_of(8) || offset.checked_add(size).is_none_or(|end| end > self.size) {
            return Err(Error::msg(format!(
                "queue at offset {offset} (size {size}) does not fit an aligned place in a {}-byte segment",
                self.size
            )));
        }
        // SAFETY: inside the mapped segment, as checked above.
        Ok(
            unsafe { (pg_sys::dsm_segment_address(self.raw) as *mut u8).add(offset) }
                as *mut pg_sys::shm_mq,
        )
    }

    /// Creates an empty message queue of `size` bytes at `offset` (a multiple of 8).
    pub fn create_queue(&self, offset: usize, size: usize) -> Result<()> {
        let address = self.queue_address(offset, size)?;
        // SAFETY: `size` bytes of the segment at `address` are ours to initialise.
        guard(|| unsafe { pg_sys::shm_mq_create(address.cast(), size) })?;
        Ok(())
    }

    fn attach_queue(
        &self,
        offset: usize,
        worker: Option<&Handle>,
        send: bool,
    ) -> Result<*mut pg_sys::shm_mq_handle> {
        let queue = self.queue_address(offset, 0)?;
        let seg = self.raw;
        let handle = worker.map_or(std::ptr::null_mut(), |w| w.raw());
        // SAFETY: a queue created in this segment; MyProc is this process. Setting a role that
        // is already taken raises an ERROR, which guard returns.
        guard(|| unsafe {
            if send {
                pg_sys::shm_mq_set_sender(queue, pg_sys::MyProc);
            } else {
                pg_sys::shm_mq_set_receiver(queue, pg_sys::MyProc);
            }
            pg_sys::shm_mq_attach(queue, seg, handle)
        })
        .map_err(Error::from)
    }

    /// Attaches to the queue at `offset` as its sender. Passing the worker's handle makes a
    /// worker that never starts count as detached.
    pub fn sender(&self, offset: usize, worker: Option<&Handle>) -> Result<Sender<'_>> {
        let raw = self.attach_queue(offset, worker, true)?;
        Ok(Sender {
            raw,
            _segment: PhantomData,
        })
    }

    /// Attaches to the queue at `offset` as its receiver.
    pub fn receiver(&self, offset: usize, worker: Option<&Handle>) -> Result<Receiver<'_>> {
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
    _segment: PhantomData<&'s Segment>,
}

impl Sender<'_> {
    /// Sends one message, waiting while the queue is full. An error when the receiver has
    /// detached (or never attached and its worker stopped).
    pub fn send(&mut self, message: &[u8]) -> Result<()> {
        let (raw, len, data) = (
            self.raw,
            message.len(),
            message.as_ptr() as *const std::ffi::c_void,
        );
        // SAFETY: an attached handle; the message outlives the call, which copies it.
        #[cfg(pg14)]
        let r = guard(|| unsafe { pg_sys::shm_mq_send(raw, len, data, false) })?;
        #[cfg(not(pg14))]
        // SAFETY: as above.
        let r = guard(|| unsafe { pg_sys::shm_mq_send(raw, len, data, false, true) })?;
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
    _segment: PhantomData<&'s Segment>,
}

impl Receiver<'_> {
    /// Receives one message, waiting until one arrives. `None` when the sender has detached
    /// (or never attached and its worker stopped).
    pub fn receive(&mut self) -> Result<Option<Vec<u8>>> {
        let raw = self.raw;
        let mut len: pg_sys::Size = 0;
        let mut data: *mut std::ffi::c_void = std::ptr::null_mut();
        let (l, d) = (
            &mut len as *mut pg_sys::Size,
            &mut data as *mut *mut std::ffi::c_void,
        );
        // SAFETY: an attached handle; out pointers valid for the call.
        let r = guard(|| unsafe { pg_sys::shm_mq_receive(raw, l, d, false) })?;
        match r {
            pg_sys::shm_mq_result_SHM_MQ_SUCCESS => {
                // SAFETY: `data` points at `len` bytes valid until the next receive.
                Ok(Some(
                    unsafe { std::slice::from_raw_parts(data as *const u8, len) }.to_vec(),
                ))
            }
            _ => Ok(None),
        }
    }
}

impl Drop for Receiver<'_> {
    fn drop(&mut self) {
        let raw = self.raw;
        // SAFETY: detaching our end.
        let _ = guard(|| unsafe { pg_sys::shm_mq_detach(raw) });
    }
}
