//! Group commit: the items of many concurrent callers written in one round trip (one statement,
//! one commit, one pipeline), each caller answered when that write is done. A writer takes what
//! is waiting when it is free, so batches grow with the load and a lone item goes at once (or,
//! where no caller waits on the answer, or while items keep coming, after a linger for others to
//! join it).
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
    /// writer waits for its write, another gathers the next batch.
    pub fn start<F, Fut>(writers: usize, max: usize, write: F) -> Batcher<T, R>
    where
        F: Fn(Vec<T>) -> Fut + 'static,
        Fut: Future<Output = Vec<R>> + 'static,
    {
        Self::start_lingering(writers, max, Duration::ZERO, write)
    }

    /// As `start`, but a writer that finds fewer than `max` items waits up to `linger` after
    /// taking the first for more to arrive: fewer, larger writes where no caller waits on the
    /// answer. (Counted from the item's submission instead, an item that waited out a write
    /// goes at once: the recorder's batches then stayed about half as large.)
    pub fn start_lingering<F, Fut>(
        writers: usize,
        max: usize,
        linger: Duration,
        write: F,
    ) -> Batcher<T, R>
    where
        F: Fn(Vec<T>) -> Fut + 'static,
        Fut: Future<Output = Vec<R>> + 'static,
    {
        Self::start_with(writers, max, linger, false, write)
    }

    /// As `start_lingering`, but a writer lingers only while items keep coming: when it took
    /// several last time and the next came within `linger` of its being free again (as
    /// PostgreSQL's `commit_delay` waits only while other transactions are active). Under
    /// concurrent load each write then takes more items (fewer statements and commits per
    /// item), while a lone item, however busy the writer was before, goes at once.
    pub fn start_lingering_under_load<F, Fut>(
        writers: usize,
        max: usize,
        linger: Duration,
        write: F,
    ) -> Batcher<T, R>
    where
        F: Fn(Vec<T>) -> Fut + 'static,
        Fut: Future<Output = Vec<R>> + 'static,
    {
        Self::start_with(writers, max, linger, true, write)
    }

    fn start_with<F, Fut>(
        writers: usize,
        max: usize,
        linger: Duration,
        under_load: bool,
        write: F,
    ) -> Batcher<T, R>
    where
        F: Fn(Vec<T>) -> Fut + 'static,
        Fut: Future<Output = Vec<R>> + 'static,
    {
        let (tx, rx) = mpsc::unbounded_channel::<Waiting<T, R>>();
        let (rx, write) = (Rc::new(Mutex::new(rx)), Rc::new(write));
        for _ in 0..writers.max(1) {
            let (rx, write) = (rx.clone(), write.clone());
            actix_web::rt::spawn(async move {
                // How many items the last batch took.
                let mut took = 0;
                loop {
                    let mut batch = Vec::new();
                    {
                        let mut rx = rx.lock().await;
                        let free = tokio::time::Instant::now();
                        let Some(first) = rx.recv().await else { return };
                        batch.push(first);
                        let coming = took > 1 && free.elapsed() < linger;
                        // Callers on this thread woken by the last write's answers send
                        // their next items now: they go in this batch, not the one after.
                        tokio::task::yield_now().await;
                        let linger = match under_load && !coming {
                            true => Duration::ZERO,
                            false => linger,
                        };
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
                    took = batch.len();
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
        let batcher = Rc::new(Batcher::start(1, 64, move |items: Vec<u32>| {
            seen.borrow_mut().push(items.len());
            async move {
                actix_web::rt::time::sleep(std::time::Duration::from_millis(20)).await;
                items.iter().map(|i| i * 10).collect()
            }
        }));
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

    type Writes = Rc<std::cell::RefCell<Vec<Vec<u32>>>>;

    /// A batcher whose writes answer each item with itself, and the writes it made.
    fn echoing(linger: Duration, under_load: bool) -> (Rc<Batcher<u32, u32>>, Writes) {
        let writes = Writes::default();
        let seen = writes.clone();
        let batcher = Batcher::start_with(1, 64, linger, under_load, move |items: Vec<u32>| {
            seen.borrow_mut().push(items.clone());
            async move { items }
        });
        (Rc::new(batcher), writes)
    }

    #[actix_web::test]
    async fn a_lingering_writer_waits_for_the_items_that_follow_its_first() {
        let linger = Duration::from_millis(300);
        let (batcher, writes) = echoing(linger, false);
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

    #[actix_web::test]
    async fn a_writer_lingers_only_while_items_keep_coming() {
        let linger = Duration::from_millis(600);
        let (batcher, writes) = echoing(linger, true);
        let timed = |i: u32| {
            let batcher = batcher.clone();
            async move {
                let started = std::time::Instant::now();
                assert_eq!(batcher.submit(i).await, Some(i));
                started.elapsed()
            }
        };
        let at_once = linger / 2;
        // Alone: at once.
        assert!(timed(1).await < at_once);
        // Two together: one write, at once (the last one took a single item).
        let (a, b) = futures_util::join!(timed(2), timed(3));
        assert!(a < at_once && b < at_once, "{a:?} {b:?}");
        // Right after that write of two, the writer waits for the items that follow.
        let later = async {
            actix_web::rt::time::sleep(Duration::from_millis(50)).await;
            timed(5).await
        };
        let (first, _) = futures_util::join!(timed(4), later);
        assert!(first >= linger, "{first:?}");
        // The load is over: an item that comes later than the linger goes at once.
        actix_web::rt::time::sleep(linger + Duration::from_millis(100)).await;
        assert!(timed(6).await < at_once);
        // Two together again, at once (the last write took one item); right after, a linger.
        let (a, b) = futures_util::join!(timed(7), timed(8));
        assert!(a < at_once && b < at_once, "{a:?} {b:?}");
        assert!(timed(9).await >= linger);
        assert!(timed(10).await < at_once);
        assert_eq!(
            *writes.borrow(),
            vec![
                vec![1],
                vec![2, 3],
                vec![4, 5],
                vec![6],
                vec![7, 8],
                vec![9],
                vec![10]
            ]
        );
    }
}
