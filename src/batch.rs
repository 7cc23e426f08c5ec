//! Group commit: the items of many concurrent callers written in one round trip (one statement,
//! one commit, one pipeline), each caller answered when that write is done. A writer takes what
//! is waiting when it is free, so batches grow with the load and a lone item goes at once (or,
//! where no caller waits on the answer, after a linger for others to join it).
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::rc::Rc;
use std::time::Duration;

use futures_util::FutureExt;

use tokio::sync::{mpsc, oneshot, Mutex};

type Waiting<T, R> = (T, oneshot::Sender<R>);

pub struct Batcher<T, R> {
    tx: mpsc::UnboundedSender<Waiting<T, R>>,
}

impl<T: 'static, R: 'static> Batcher<T, R> {
    /// Starts `writers` tasks on the current thread's runtime (at least one). Each takes up to
    /// `max` waiting items and hands them to `write`, which answers each, in order. While one
    /// writer waits for its write, another gathers the next batch. With a `linger`, a writer
    /// that finds fewer than `max` items waits up to that long after taking the first for more
    /// to arrive: fewer, larger writes where no caller waits on the answer. (Counted from the
    /// item's submission instead, an item that waited out a write goes at once: the recorder's
    /// batches then stayed about half as large.)
    pub fn start<F, Fut>(writers: usize, max: usize, linger: Duration, write: F) -> Batcher<T, R>
    where
        F: Fn(Vec<T>) -> Fut + 'static,
        Fut: Future<Output = Vec<R>> + 'static,
    {
        let (tx, rx) = mpsc::unbounded_channel::<Waiting<T, R>>();
        let (rx, write) = (Rc::new(Mutex::new(rx)), Rc::new(write));
        for _ in 0..writers.max(1) {
            let (rx, write) = (rx.clone(), write.clone());
            actix_web::rt::spawn(async move {
                loop {
                    let mut batch = Vec::new();
                    {
                        let mut rx = rx.lock().await;
                        let Some(first) = rx.recv().await else { return };
                        batch.push(first);
                        // Callers on this thread woken by the last write's answers send
                        // their next items now: they go in this batch, not the one after.
                        tokio::task::yield_now().await;
                        let until = tokio::time::Instant::now() + linger;
                        while batch.len() < max {
                            let next = match rx.try_recv() {
                                Ok(next) => Some(next),
                                Err(_) if linger.is_zero() => None,
                                Err(_) => tokio::time::timeout_at(until, rx.recv())
                                    .await
                                    .ok()
                                    .flatten(),
                            };
                            match next {
                                Some(next) => batch.push(next),
                                None => break,
                            }
                        }
                    }
                    // A caller that gave up (its time ran out) has its item left out: it
                    // acts as if it was never written, and so it is not.
                    let (items, replies): (Vec<T>, Vec<_>) =
                        batch.into_iter().filter(|(_, r)| !r.is_closed()).unzip();
                    if items.is_empty() {
                        continue;
                    }
                    // A write that panics answers none of its callers (they see the writer
                    // gone); the writer goes on with the next batch.
                    let Ok(answers) = AssertUnwindSafe(write(items)).catch_unwind().await else {
                        log::error!("a batch write panicked; its items were not answered");
                        continue;
                    };
                    debug_assert_eq!(answers.len(), replies.len());
                    for (reply, answer) in replies.into_iter().zip(answers) {
                        let _ = reply.send(answer);
                    }
                }
            });
        }
        Batcher { tx }
    }
}

impl<T, R> Batcher<T, R> {
    /// Waits for `item`'s turn and its answer; `None` when the writers are gone (the runtime
    /// they ran on stopped) or the write failed outright. Dropping the future before its
    /// batch is taken withdraws the item.
    pub async fn submit(&self, item: T) -> Option<R> {
        let (reply, answer) = oneshot::channel();
        self.tx.send((item, reply)).ok()?;
        answer.await.ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[actix_web::test]
    async fn concurrent_items_share_writes_and_get_their_own_answers() {
        let writes = Rc::new(std::cell::RefCell::new(Vec::new()));
        let seen = writes.clone();
        let batcher = Rc::new(Batcher::start(
            1,
            64,
            Duration::ZERO,
            move |items: Vec<u32>| {
                seen.borrow_mut().push(items.len());
                async move {
                    actix_web::rt::time::sleep(std::time::Duration::from_millis(20)).await;
                    items.iter().map(|i| i * 10).collect()
                }
            },
        ));
        let calls = (0..100u32).map(|i| {
            let batcher = batcher.clone();
            async move { (i, batcher.submit(i).await) }
        });
        for (i, answer) in futures_util::future::join_all(calls).await {
            assert_eq!(answer, Some(i * 10));
        }
        let writes = writes.borrow();
        assert_eq!(writes.iter().sum::<usize>(), 100);
        // Waiting together, 64 at most at a time: a few writes, not 100.
        assert!(
            writes.len() <= 4 && writes.iter().all(|&n| n <= 64),
            "{writes:?}"
        );
    }

    #[actix_web::test]
    async fn a_lingering_writer_waits_for_the_items_that_follow_its_first() {
        let linger = Duration::from_millis(300);
        let writes = Rc::new(std::cell::RefCell::new(Vec::new()));
        let seen = writes.clone();
        let batcher = Rc::new(Batcher::start(1, 64, linger, move |items: Vec<u32>| {
            seen.borrow_mut().push(items.clone());
            async move { items }
        }));
        // One every 10 ms: each finds the writer still waiting for more.
        let calls = (0..5u32).map(|i| {
            let batcher = batcher.clone();
            async move {
                actix_web::rt::time::sleep(Duration::from_millis(10 * u64::from(i))).await;
                batcher.submit(i).await
            }
        });
        let answers = futures_util::future::join_all(calls).await;
        assert_eq!(answers, (0..5).map(Some).collect::<Vec<_>>());
        assert_eq!(*writes.borrow(), vec![vec![0, 1, 2, 3, 4]]);
        // A lone item is written when the linger is over.
        let started = std::time::Instant::now();
        assert_eq!(batcher.submit(7).await, Some(7));
        assert!(started.elapsed() >= linger);
        assert_eq!(writes.borrow().len(), 2);
    }
}
