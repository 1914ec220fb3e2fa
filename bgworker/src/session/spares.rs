//! A backend's last few session segments, kept mapped after their clients are gone: the
//! next client of the same queue size makes one new again once its worker has let it go,
//! instead of creating a segment (a file to create, size and fill with zero pages) that its
//! worker then destroys. Several are kept because a worker lets its segment go a little
//! after its client detaches: a backend that launches job after job finds the one before
//! last free.
//!
//! ```no_run
//! // Client::launch and Client::from_pool reuse a spare segment when they can:
//! # fn f(builder: bgworker::worker::Builder) -> bgworker::Result<()> {
//! for _ in 0..1000 {
//!     let mut client = bgworker::session::Client::launch(builder.clone(), 65536)?;
//!     client.send("SELECT 1")?;
//! }
//! # Ok(()) }
//! ```

use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::atomic::Ordering::SeqCst;

use super::control::{Control, CONTROL_SIZE};
use crate::dsm::Segment;

/// How many segments a backend keeps (each two queues and a control block).
const KEPT: usize = 4;

/// The largest segment kept (with 1 MB queues): bigger ones go with their client.
const LARGEST_KEPT: usize = 2 * 1024 * 1024 + 4096;

thread_local! {
    /// Newest first.
    static SPARES: RefCell<VecDeque<Box<Segment>>> = const { RefCell::new(VecDeque::new()) };
}

/// Keeps the segment of a client that is being dropped; the oldest spare beyond [`KEPT`]
/// is detached (a worker that still uses it keeps its own mapping).
pub(super) fn keep(segment: Box<Segment>) {
    if segment.size() > LARGEST_KEPT {
        return;
    }
    let pushed_out = SPARES.with(|spares| {
        let mut spares = spares.borrow_mut();
        spares.push_front(segment);
        if spares.len() > KEPT {
            spares.pop_back()
        } else {
            None
        }
    });
    drop(pushed_out);
}

/// A spare segment with `queue_size` queues whose last worker has let it go, made new
/// again (control block, empty queues, pinned for the next worker).
pub(super) fn take(queue_size: usize) -> Option<(Box<Segment>, &'static Control)> {
    let segment = SPARES.with(|spares| {
        let mut spares = spares.borrow_mut();
        let free = spares.iter().position(|segment| {
            // SAFETY: a segment new_segment made, still mapped (the box owns the mapping),
            // with a control block at its start.
            unsafe { Control::attach(segment.base()) }.is_ok_and(|old| {
                old.queue_size.load(SeqCst) as usize == queue_size && old.released.load(SeqCst) != 0
            })
        })?;
        spares.remove(free)
    })?;
    // SAFETY: nobody uses the segment any more: the last client's queue ends are gone and
    // its worker released it (it touches nothing of it after that), so its control block
    // and queues may be written anew.
    let control = unsafe {
        let control = Control::create(segment.base(), queue_size);
        segment.recreate_queue(CONTROL_SIZE).ok()?;
        segment.recreate_queue(CONTROL_SIZE + queue_size).ok()?;
        control
    };
    control.client.set(crate::latch::Waker::current().ok());
    segment.keep().ok()?;
    Some((segment, control))
}
