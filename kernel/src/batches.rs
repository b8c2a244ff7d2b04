//! [`Batches`]: a queue read in batches bounded in items and bytes, for the outboxes that
//! send whatever queued while the previous send was busy (a partition's proposals, a
//! peer's Raft messages).

use tokio::sync::mpsc;

/// A queue read in batches. A batch starts with one item (waited for), then takes
/// whatever is queued at that moment, up to a number of items and of bytes; the first
/// item goes whatever its size. An item that would take a batch past its bytes starts
/// the next batch instead, so nothing is reordered.
#[derive(Debug)]
pub struct Batches<T> {
    queue: mpsc::UnboundedReceiver<T>,
    /// The item that did not fit in the last batch.
    carried: Option<T>,
}

impl<T> Batches<T> {
    pub fn new(queue: mpsc::UnboundedReceiver<T>) -> Batches<T> {
        Batches { queue, carried: None }
    }

    /// The first item of the next batch: the one carried over, else the next to arrive;
    /// `None` once the queue's senders are gone and it is empty.
    pub async fn first(&mut self) -> Option<T> {
        match self.carried.take() {
            Some(item) => Some(item),
            None => self.queue.recv().await,
        }
    }

    /// The batch begun with `first`: it and the items queued now, at most `items_max` of
    /// them and `bytes_max` bytes by `size`.
    pub fn fill(&mut self, first: T, items_max: usize, bytes_max: usize, size: impl Fn(&T) -> usize) -> Vec<T> {
        let mut bytes = size(&first);
        let mut batch = vec![first];
        while batch.len() < items_max {
            let Ok(next) = self.queue.try_recv() else { break };
            bytes = bytes.saturating_add(size(&next));
            if bytes > bytes_max {
                self.carried = Some(next);
                break;
            }
            batch.push(next);
        }
        batch
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn batches_are_bounded_and_keep_the_order() {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut batches = Batches::new(rx);
        for n in [5usize, 3, 4, 9, 1, 1, 1, 1] {
            tx.send(n).unwrap();
        }
        let mut next = async |items_max, bytes_max| {
            let first = batches.first().await.unwrap();
            batches.fill(first, items_max, bytes_max, |n| *n)
        };
        // 5 + 3 fits 10 bytes; 4 would not: it is carried and starts the next batch.
        assert_eq!(next(usize::MAX, 10).await, vec![5, 3]);
        assert_eq!(next(usize::MAX, 10).await, vec![4]);
        // The first item goes whatever its size.
        assert_eq!(next(usize::MAX, 5).await, vec![9]);
        assert_eq!(next(3, 100).await, vec![1, 1, 1]);
        assert_eq!(next(3, 100).await, vec![1]);
        drop(tx);
        assert_eq!(batches.first().await, None);
    }
}
