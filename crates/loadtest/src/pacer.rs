//! Send times for open-loop mode, finer than Tokio's timer.
//!
//! In open loop a request due at `t` must leave at `t`, because its latency counts from
//! then. Tokio's timer wheel ticks in whole milliseconds and rounds up, so
//! `sleep_until(t)` returned up to a millisecond or two late, and that lateness was
//! reported as the server's latency (a server answering in ~0.2 ms measured ~1.3 ms at
//! p50 at 20,000 requests/s). Each runtime thread has one pacer instead: a `timerfd`
//! (nanosecond resolution) armed for the earliest due time of the thread's connections,
//! and one task that reads it and wakes the connections whose time has come.

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::future::poll_fn;
use std::io;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// One thread's pacer; `slot` is a connection's index among that thread's connections.
pub(crate) struct Pacer {
    fd: AsyncFd<Timer>,
    state: RefCell<State>,
}

struct Timer(TimerFd);

impl AsRawFd for Timer {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

struct State {
    /// Due times not yet reached, earliest first.
    queue: BinaryHeap<Reverse<(Instant, usize)>>,
    /// Per slot: the waker of the connection waiting, and for which due time.
    waiting: Vec<Option<(Instant, Waker)>>,
    /// What the timerfd is armed for.
    armed: Option<Instant>,
    /// The timerfd failed: Tokio's timer instead.
    coarse: bool,
}

impl Pacer {
    /// A pacer for `slots` connections; it must run [`Pacer::drive`] on the same thread.
    pub(crate) fn new(slots: usize) -> io::Result<Pacer> {
        let fd = TimerFd::new(
            ClockId::CLOCK_MONOTONIC,
            TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
        )?;
        // SAFETY: `Timer` owns the timerfd (through `TimerFd`'s `OwnedFd`) for as long as the
        // `AsyncFd` holds it, and `as_raw_fd` always returns that same descriptor.
        #[allow(unsafe_code)]
        let fd = unsafe { AsyncFd::register_with_interest(Timer(fd), Interest::READABLE) }?;
        Ok(Pacer {
            fd,
            state: RefCell::new(State {
                queue: BinaryHeap::with_capacity(slots),
                waiting: vec![None; slots],
                armed: None,
                coarse: false,
            }),
        })
    }

    /// Completes at `due` (at once if it has passed).
    pub(crate) async fn until(&self, slot: usize, due: Instant) {
        let paced = poll_fn(|cx| {
            if Instant::now() >= due {
                return Poll::Ready(true);
            }
            let mut st = self.state.borrow_mut();
            if st.coarse {
                return Poll::Ready(false);
            }
            let queued = st.waiting[slot].as_ref().is_some_and(|(d, _)| *d == due);
            st.waiting[slot] = Some((due, cx.waker().clone()));
            if !queued {
                st.queue.push(Reverse((due, slot)));
                if st.armed.is_none_or(|a| due < a) {
                    self.arm(&mut st, due);
                }
            }
            Poll::Pending
        })
        .await;
        if !paced {
            tokio::time::sleep_until(due.into()).await;
        }
    }

    /// Wakes the connections whose time has come, whenever the timerfd fires; runs until
    /// its task is dropped.
    pub(crate) async fn drive(&self) {
        loop {
            match self.fd.readable().await {
                Ok(mut guard) => {
                    // Reading the expiration count resets the timerfd's readiness; EAGAIN
                    // only means a re-arm in between already did.
                    let _ = guard.get_inner().0.wait();
                    guard.clear_ready();
                }
                Err(_) => {
                    coarse(&mut self.state.borrow_mut());
                    return;
                }
            }
            self.fire();
        }
    }

    fn fire(&self) {
        let now = Instant::now();
        let mut st = self.state.borrow_mut();
        st.armed = None;
        while let Some(&Reverse((due, slot))) = st.queue.peek() {
            if due > now {
                self.arm(&mut st, due);
                break;
            }
            st.queue.pop();
            // Only if the connection still waits for this due time (not a stale entry).
            if st.waiting[slot].as_ref().is_some_and(|(d, _)| *d == due) {
                if let Some((_, waker)) = st.waiting[slot].take() {
                    waker.wake();
                }
            }
        }
    }

    fn arm(&self, st: &mut State, due: Instant) {
        // A zero expiration would disarm the timer: at least a nanosecond.
        let wait = due
            .saturating_duration_since(Instant::now())
            .max(Duration::from_nanos(1));
        let set = self.fd.get_ref().0.set(
            Expiration::OneShot(TimeSpec::from_duration(wait)),
            TimerSetTimeFlags::empty(),
        );
        match set {
            Ok(()) => st.armed = Some(due),
            Err(_) => coarse(st),
        }
    }
}

/// The timerfd failed (it should not): from now on the connections wait on Tokio's timer,
/// late by up to its millisecond tick rather than not at all; those waiting are woken to
/// switch.
fn coarse(st: &mut State) {
    st.coarse = true;
    st.queue.clear();
    st.armed = None;
    for w in st.waiting.iter_mut() {
        if let Some((_, waker)) = w.take() {
            waker.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::rc::Rc;

    use super::*;

    #[test]
    fn wakes_each_connection_at_its_due_time_and_in_due_order() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let local = tokio::task::LocalSet::new();
        local.block_on(&rt, async {
            let pacer = Rc::new(Pacer::new(4).unwrap());
            let driver = Rc::clone(&pacer);
            tokio::task::spawn_local(async move { driver.drive().await });
            let base = Instant::now() + Duration::from_millis(5);
            let woke = Rc::new(RefCell::new(Vec::new()));
            // Slots in a different order from their due times.
            let tasks: Vec<_> = [900u64, 300, 600, 0]
                .into_iter()
                .enumerate()
                .map(|(slot, offset_us)| {
                    let (pacer, woke) = (Rc::clone(&pacer), Rc::clone(&woke));
                    let due = base + Duration::from_micros(offset_us);
                    tokio::task::spawn_local(async move {
                        pacer.until(slot, due).await;
                        assert!(Instant::now() >= due, "slot {slot} woke before its time");
                        woke.borrow_mut().push(slot);
                    })
                })
                .collect();
            for t in tasks {
                t.await.unwrap();
            }
            assert_eq!(*woke.borrow(), [3, 1, 2, 0]);
            // A time that has passed does not wait, and leaves nothing queued.
            pacer.until(0, Instant::now()).await;
            assert!(pacer.state.borrow().queue.is_empty());
        });
    }
}
