//! What a [`Client`](super::Client) and its worker share besides the two queues: how far
//! the worker got through the strings it was sent, which strings are canceled, the client's
//! latch, and the progress the running SQL reports. It sits at the start of the session's
//! segment; every field is an atomic, written by one side and read by the other.
//!
//! ```no_run
//! # fn f(client: &bgworker::session::Client) -> bgworker::Result<()> {
//! // The client side reads it through its Client:
//! let (sent, done) = client.progress_counts();
//! if let Some((percent, message)) = client.progress() {
//!     bgworker::notice!("{done}/{sent} strings, {percent}%: {message:?}");
//! }
//! # Ok(()) }
//! ```

use std::cell::Cell;
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, AtomicU8, Ordering::SeqCst};

use crate::error::{Error, Result};
use crate::latch::WakerSlot;

/// The longest progress message kept, in bytes (longer ones are cut at a character
/// boundary).
///
/// ```
/// assert_eq!(bgworker::session::PROGRESS_MESSAGE_MAX, 64);
/// ```
pub const PROGRESS_MESSAGE_MAX: usize = 64;

const MAGIC: u64 = 0x6267_7773_6573_7331; // "bgwsess1"

/// The space the control block takes at the start of the segment (the queues follow).
pub(crate) const CONTROL_SIZE: usize = 256;

#[repr(C)]
pub(crate) struct Control {
    magic: AtomicU64,
    /// The worker's pid once it attached; 0 before.
    pub(crate) worker_pid: AtomicI32,
    /// The size of each of the two queues after the block.
    pub(crate) queue_size: AtomicU64,
    /// Set by the worker once it no longer touches the segment (its queue handles are
    /// gone): the client's backend may then make the segment new for another job.
    pub(crate) released: AtomicU32,
    /// Strings the client has sent (the client writes it before sending each).
    pub(crate) sent: AtomicU64,
    /// Strings the worker has finished, successfully or not.
    pub(crate) done: AtomicU64,
    /// Set once the worker is connected and reads the strings (by the worker, or by the
    /// client when it hands the job to an idle pooled worker): before that, replies are far
    /// off (a new worker's connection takes a while), and the client sleeps rather than
    /// spin for them.
    pub(crate) connected: AtomicU32,
    /// The number (from 1) of the string the worker is running; 0 between strings.
    pub(crate) running: AtomicU64,
    /// Strings numbered up to this are canceled: not started, or stopped by a query cancel.
    pub(crate) cancel_upto: AtomicU64,
    /// The client's latch: set when a string ends and when progress is reported.
    pub(crate) client: WakerSlot,
    /// Odd while the worker writes the progress below (a sequence lock).
    progress_seq: AtomicU64,
    progress_percent: AtomicI32,
    progress_len: AtomicU32,
    progress_message: [AtomicU8; PROGRESS_MESSAGE_MAX],
}

const _: () = assert!(std::mem::size_of::<Control>() <= CONTROL_SIZE);

impl Control {
    /// Writes a fresh control block at `at`.
    ///
    /// # Safety
    /// `at` is 8-byte aligned, `CONTROL_SIZE` writable bytes of a segment nobody else uses
    /// yet.
    pub(crate) unsafe fn create(at: *mut u8, queue_size: usize) -> &'static Control {
        let control = at as *mut Control;
        // SAFETY: per the contract; all-zero is a valid value of every field.
        unsafe {
            std::ptr::write_bytes(at, 0, CONTROL_SIZE);
            (*control).queue_size.store(queue_size as u64, SeqCst);
            (*control).magic.store(MAGIC, SeqCst);
            &*control
        }
    }

    /// The control block a [`Control::create`] wrote at `at`.
    ///
    /// # Safety
    /// `at` is the start of a mapping of at least `CONTROL_SIZE` bytes that lives for the
    /// rest of the process (or as long as the reference is used).
    pub(crate) unsafe fn attach(at: *mut u8) -> Result<&'static Control> {
        // SAFETY: per the contract; atomics are valid for any bit pattern.
        let control = unsafe { &*(at as *const Control) };
        if control.magic.load(SeqCst) != MAGIC {
            return Err(Error::msg(
                "this segment has no background session control block",
            ));
        }
        Ok(control)
    }

    /// Records a progress report of the running SQL and wakes the client.
    pub(crate) fn report_progress(&self, percent: i32, message: Option<&str>) {
        let message = message.map(|m| cut(m, PROGRESS_MESSAGE_MAX));
        self.progress_seq.fetch_add(1, SeqCst);
        self.progress_percent.store(percent, SeqCst);
        match message {
            None => self.progress_len.store(u32::MAX, SeqCst),
            Some(m) => {
                for (slot, byte) in self.progress_message.iter().zip(m.bytes()) {
                    slot.store(byte, SeqCst);
                }
                self.progress_len.store(m.len() as u32, SeqCst);
            }
        }
        self.progress_seq.fetch_add(1, SeqCst);
        self.client.wake();
    }

    /// The last progress report: percent and message; `None` before the first.
    pub(crate) fn progress(&self) -> Option<(i32, Option<String>)> {
        loop {
            let before = self.progress_seq.load(SeqCst);
            if before == 0 {
                return None;
            }
            if before % 2 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let percent = self.progress_percent.load(SeqCst);
            let len = self.progress_len.load(SeqCst);
            let message = (len != u32::MAX).then(|| {
                let bytes: Vec<u8> = self.progress_message
                    [..(len as usize).min(PROGRESS_MESSAGE_MAX)]
                    .iter()
                    .map(|b| b.load(SeqCst))
                    .collect();
                String::from_utf8_lossy(&bytes).into_owned()
            });
            if self.progress_seq.load(SeqCst) == before {
                return Some((percent, message));
            }
        }
    }
}

/// The longest prefix of `text` of at most `max` bytes that ends on a character boundary.
fn cut(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

thread_local! {
    /// In a worker that [`serve`](super::serve)s a session: its control block.
    static SERVING: Cell<Option<&'static Control>> = const { Cell::new(None) };
}

pub(crate) fn set_serving(control: &'static Control) {
    SERVING.with(|s| s.set(Some(control)));
}

/// Forgets the control block of a job that is over (its segment is about to go).
pub(crate) fn clear_serving() {
    SERVING.with(|s| s.set(None));
}

/// Reports the progress of the SQL this worker runs for a [`Client`](super::Client): a
/// percentage (clamped to 0..=100) and a message (cut to 64 bytes), which the client reads
/// with [`Client::progress`](super::Client::progress). Call it from a SQL function the
/// session's SQL calls.
///
/// ```no_run
/// bgworker::sql_function! {
///     fn report(percent: i32, message: Option<String>) -> () {
///         bgworker::session::report_progress(percent, message.as_deref())
///     }
/// }
/// # fn main() {}
/// ```
pub fn report_progress(percent: i32, message: Option<&str>) -> Result<()> {
    let control = SERVING.with(Cell::get).ok_or_else(|| {
        Error::from(crate::error::PgError::new(
            crate::error::SqlState::FEATURE_NOT_SUPPORTED,
            "progress can only be reported from a background session worker",
        ))
    })?;
    control.report_progress(percent.clamp(0, 100), message);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::cut;

    #[test]
    fn cuts_at_character_boundaries() {
        assert_eq!(cut("abc", 64), "abc");
        assert_eq!(cut("ééé", 3), "é");
        assert_eq!(cut("", 0), "");
    }
}
