//! The queue that carries a request's interim messages (what an upstream
//! sends before its answer: progress, log lines, its own requests) to
//! whoever is waiting for that answer.
//!
//! Every relayed call needs one, and almost none is ever used: a JSON-answering
//! upstream sends no interim messages. Tokio's unbounded channel allocates a
//! 32-slot block (2.5 KB for a `Message`) and its channel state up front, per
//! call; this queue is one small allocation and a `VecDeque` that allocates
//! only when a message arrives. One receiver; it never reports "closed"
//! (a waiting `recv` simply stays pending, like a branch of `select!` that
//! is disabled), and what is sent after the receiver is gone is dropped.
//!
//! The same allocation carries the request's cancellation ([`Cancel`]): the
//! waiter for interim messages is the waiter a cancellation must wake, and a
//! `CancellationToken` per call cost a second allocation, its own lock and a
//! waker registration under that lock on every call.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;

struct Shared<T> {
    items: Mutex<VecDeque<T>>,
    waker: AtomicWaker,
    receiver_gone: AtomicBool,
    cancelled: AtomicBool,
}

/// The sending side; cheap to clone, usable from any task.
pub struct Sender<T>(Arc<Shared<T>>);

/// The one receiving side.
pub struct Receiver<T>(Arc<Shared<T>>);

/// Ends the receiver's wait for good: [`Receiver::wait`] answers
/// [`Wake::Cancelled`] from then on. Held by whoever may cancel the request.
pub struct Cancel<T>(Arc<Shared<T>>);

/// What [`Receiver::wait`] woke for.
#[derive(Debug, PartialEq, Eq)]
pub enum Wake<T> {
    Item(T),
    Cancelled,
}

pub fn queue<T>() -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        items: Mutex::new(VecDeque::new()),
        waker: AtomicWaker::new(),
        receiver_gone: AtomicBool::new(false),
        cancelled: AtomicBool::new(false),
    });
    (Sender(Arc::clone(&shared)), Receiver(shared))
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        Sender(Arc::clone(&self.0))
    }
}

impl<T> Sender<T> {
    /// Queues `item` and wakes the receiver. Dropped if the receiver is gone.
    pub fn send(&self, item: T) {
        if self.0.receiver_gone.load(Ordering::Acquire) {
            return;
        }
        self.0
            .items
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_back(item);
        self.0.waker.wake();
    }
}

impl<T> Receiver<T> {
    /// The oldest queued item, if any, without waiting.
    pub fn try_recv(&self) -> Option<T> {
        self.0
            .items
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop_front()
    }

    /// Waits for the next item; pending for as long as none comes.
    pub async fn recv(&self) -> T {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Waits for the next item or for a [`Cancel`], whichever comes first;
    /// pending for as long as neither comes.
    pub async fn wait(&self) -> Wake<T> {
        poll_fn(|cx| {
            if self.0.cancelled.load(Ordering::Acquire) {
                return Poll::Ready(Wake::Cancelled);
            }
            // A cancel between the check above and the registration inside
            // wakes the registered waker, and the next poll sees the flag.
            self.poll_recv(cx).map(Wake::Item)
        })
        .await
    }

    /// The handle that cancels this receiver's [`wait`](Self::wait).
    pub fn canceller(&self) -> Cancel<T> {
        Cancel(Arc::clone(&self.0))
    }

    fn poll_recv(&self, cx: &mut Context<'_>) -> Poll<T> {
        if let Some(item) = self.try_recv() {
            return Poll::Ready(item);
        }
        // Registered before the second look, so an item sent in between
        // either is seen now or wakes us.
        self.0.waker.register(cx.waker());
        match self.try_recv() {
            Some(item) => Poll::Ready(item),
            None => Poll::Pending,
        }
    }
}

impl<T> Cancel<T> {
    pub fn cancel(&self) {
        self.0.cancelled.store(true, Ordering::Release);
        self.0.waker.wake();
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        self.0.receiver_gone.store(true, Ordering::Release);
        self.0
            .items
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn items_arrive_in_order_across_tasks() {
        let (tx, rx) = queue();
        let sender = tokio::spawn(async move {
            for i in 0..100 {
                tx.send(i);
                if i % 10 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        });
        for i in 0..100 {
            let got = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await;
            assert_eq!(got.ok(), Some(i));
        }
        assert!(sender.await.is_ok());
        assert_eq!(rx.try_recv(), None);
    }

    #[tokio::test]
    async fn a_waiting_receiver_is_woken_by_a_later_send() {
        let (tx, rx) = queue();
        let waiter = tokio::spawn(async move { rx.recv().await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        tx.send("late");
        let got = tokio::time::timeout(Duration::from_secs(5), waiter).await;
        assert!(matches!(got, Ok(Ok("late"))));
    }

    #[tokio::test]
    async fn recv_stays_pending_when_nothing_is_sent_even_after_senders_are_gone() {
        let (tx, rx) = queue::<u8>();
        drop(tx);
        let waited = tokio::time::timeout(Duration::from_millis(20), rx.recv()).await;
        assert!(waited.is_err());
    }

    #[tokio::test]
    async fn a_cancel_wakes_a_waiting_receiver_and_sticks() {
        let (tx, rx) = queue::<u8>();
        let cancel = rx.canceller();
        let waiter = tokio::spawn(async move {
            let first = rx.wait().await;
            (first, rx)
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        cancel.cancel();
        let got = tokio::time::timeout(Duration::from_secs(5), waiter).await;
        let Ok(Ok((first, rx))) = got else {
            panic!("the cancel did not wake the waiting receiver");
        };
        assert_eq!(first, Wake::Cancelled);
        // Items sent after a cancel do not hide it.
        tx.send(7);
        assert_eq!(rx.wait().await, Wake::Cancelled);
    }

    #[tokio::test]
    async fn wait_yields_items_until_cancelled() {
        let (tx, rx) = queue();
        tx.send(1);
        assert_eq!(rx.wait().await, Wake::Item(1));
        let waited = tokio::time::timeout(Duration::from_millis(20), rx.wait()).await;
        assert!(
            waited.is_err(),
            "nothing sent, nothing cancelled: still waiting"
        );
    }

    #[test]
    fn sends_after_the_receiver_is_gone_are_dropped() {
        let (tx, rx) = queue();
        tx.send(1);
        drop(rx);
        tx.send(2);
        assert!(tx.0.items.lock().map(|q| q.is_empty()).unwrap_or(false));
    }
}
