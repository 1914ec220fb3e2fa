//! Shared memory: a counter behind an LWLock, an atomic counter, and a message queue echo
//! worker in a dynamic shared memory segment.

use std::sync::atomic::{AtomicU64, Ordering};

use bgworker::dsm::Segment;
use bgworker::latch::{Waker, WakerSlot};
use bgworker::prelude::*;
use bgworker::shmem::{Shared, SharedLock};

static ATOMIC_HITS: Shared<AtomicU64> =
    Shared::new(c"test_workers atomic hits", || AtomicU64::new(0));
static LOCKED_HITS: SharedLock<[i64; 2]> = SharedLock::new(c"test_workers locked hits", || [0, 0]);

/// A latch another backend can set.
static REMEMBERED: Shared<WakerSlot> =
    Shared::new(c"test_workers remembered latch", WakerSlot::new);
/// Counts `wake_remembered` calls, made before it sets the latch: what `wait_my_latch`
/// waits for (a latch may be set for other reasons too).
static WAKE_CALLS: Shared<AtomicU64> =
    Shared::new(c"test_workers wake calls", || AtomicU64::new(0));

/// What a build of bgworker from before the session pool's name carried its layout left
/// in shared memory: another layout under the pool's plain name.
static OLD_POOL: Shared<[u64; 3]> = Shared::new(c"bgworker session pool", || [0; 3]);

pub fn request() -> Result<()> {
    ATOMIC_HITS.request()?;
    LOCKED_HITS.request()?;
    REMEMBERED.request()?;
    WAKE_CALLS.request()
}

bgworker::sql_function! {
    /// Creates, in the spare shared memory, what an older build left under the pool's name.
    fn occupy_old_pool_name() -> bool {
        OLD_POOL.attach_late().map(|_| true)
    }
}

bgworker::sql_function! {
    /// Stores this backend's latch for `wake_remembered`; returns this backend's pid.
    fn remember_my_latch() -> i32 {
        let me = Waker::current()?;
        REMEMBERED.get()?.set(Some(me));
        Ok(me.pid())
    }
}

bgworker::sql_function! {
    /// Sets the remembered latch; false if its backend is gone.
    fn wake_remembered() -> bool {
        WAKE_CALLS.get()?.fetch_add(1, Ordering::SeqCst);
        Ok(REMEMBERED.get()?.wake())
    }
}

bgworker::sql_function! {
    /// Waits up to `millis` for `wake_remembered` to set this backend's latch: "latch",
    /// or "timeout" if it did not come in time.
    fn wait_my_latch(millis: i64) -> String {
        let calls = WAKE_CALLS.get()?;
        let before = calls.load(Ordering::SeqCst);
        let deadline = std::time::Instant::now() + std::time::Duration::from_millis(millis as u64);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let woke = latch::wait(Some(left))?;
            if woke == latch::Woke::Latch && calls.load(Ordering::SeqCst) != before {
                return Ok("latch".into());
            }
            if woke == latch::Woke::Timeout {
                return Ok("timeout".into());
            }
        }
    }
}

bgworker::sql_function! {
    /// Bumps both counters; returns {atomic, locked, locked calls seen under the lock}.
    fn shmem_bump(by: i64) -> Vec<i64> {
        let atomic = ATOMIC_HITS.get()?.fetch_add(by as u64, Ordering::SeqCst) + by as u64;
        let mut locked = LOCKED_HITS.exclusive()?;
        locked[0] += by;
        locked[1] += 1;
        Ok(vec![atomic as i64, locked[0], locked[1]])
    }
}

bgworker::sql_function! {
    fn shmem_read() -> Vec<i64> {
        let atomic = ATOMIC_HITS.get()?.load(Ordering::SeqCst);
        let locked = LOCKED_HITS.share()?;
        Ok(vec![atomic as i64, locked[0], locked[1]])
    }
}

const QUEUE: usize = 16 * 1024;

/// Receives one message from queue 0 and answers on queue 1 in upper case; a message
/// starting with "vanish" makes it leave without answering.
pub struct MqEcho;

impl Worker for MqEcho {
    const NAME: &'static str = "test mq echo";
    const TYPE: &'static str = "test_mq_echo";

    fn main(arg: i64) -> Result<()> {
        let segment = Segment::attach(arg as u32)?;
        let mut input = segment.receiver(0, None)?;
        let mut output = segment.sender(QUEUE, None)?;
        let Some(message) = input.receive()? else {
            log!("mq echo: sender went away");
            return Ok(());
        };
        if message.starts_with(b"vanish") {
            log!("mq echo: leaving without an answer");
            return Ok(());
        }
        output.send(&message.to_ascii_uppercase())?;
        Ok(())
    }
}
bgworker::export_worker!(MqEcho, "test_mq_echo_main");

bgworker::sql_function! {
    /// Sends `message` to a fresh echo worker and returns its answer, or NULL when the worker
    /// went away without one.
    fn mq_echo(message: String) -> Option<String> {
        let segment = Segment::create(2 * QUEUE)?;
        segment.create_queue(0, QUEUE)?;
        segment.create_queue(QUEUE, QUEUE)?;
        let handle = MqEcho::launch(segment.handle() as i64)?;
        let mut to_worker = segment.sender(0, Some(&handle))?;
        let mut from_worker = segment.receiver(QUEUE, Some(&handle))?;
        to_worker.send(message.as_bytes())?;
        let answer = from_worker.receive()?;
        Ok(answer.map(|a| String::from_utf8_lossy(&a).into_owned()))
    }
}
