//! The documents the projector wrote last, so that a batch of events for
//! orders it has seen costs the read model one write and no read.
//!
//! Safe without any invalidation protocol: a document at version `v` is a
//! pure fold of the order's first `v` events, so a cached copy is never
//! wrong, only possibly old. An old copy (another instance projected the
//! order meanwhile) shows up as a version gap (repaired from the event
//! store) or as an upsert the version guard refuses (counted as duplicates).

use std::collections::HashMap;

use uuid::Uuid;

use crate::domain::Order;

/// Two generations of at most `half` documents each: a hit in the older one
/// moves to the newer; when the newer is full it becomes the older and the
/// oldest generation is dropped. Bounded memory, no per-entry bookkeeping.
#[derive(Debug)]
pub(crate) struct DocCache {
    young: HashMap<Uuid, Order>,
    old: HashMap<Uuid, Order>,
    half: usize,
}

impl DocCache {
    /// Keeps at most `capacity` documents (0 keeps none).
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            young: HashMap::new(),
            old: HashMap::new(),
            half: capacity / 2,
        }
    }

    /// Takes the document out (the caller puts back what it wrote).
    pub(crate) fn take(&mut self, id: &Uuid) -> Option<Order> {
        let young = self.young.remove(id);
        let old = self.old.remove(id);
        young.or(old)
    }

    pub(crate) fn put(&mut self, order: Order) {
        if self.half == 0 {
            return;
        }
        self.old.remove(&order.id);
        if self.young.len() >= self.half {
            self.old = std::mem::take(&mut self.young);
        }
        self.young.insert(order.id, order);
    }

    pub(crate) fn clear(&mut self) {
        self.young.clear();
        self.old.clear();
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.young.len() + self.old.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{now, OrderEvent};

    fn doc(version: u64) -> Order {
        let created = OrderEvent::Created {
            customer_id: "c".into(),
            restaurant_id: "r".into(),
            items: Vec::new(),
            total_amount: Default::default(),
        };
        let mut o = Order::apply(None, Uuid::now_v7(), &created, 1, now()).expect("created");
        o.version = version;
        o
    }

    #[test]
    fn a_document_put_is_taken_once() {
        let mut c = DocCache::new(8);
        let o = doc(1);
        c.put(o.clone());
        assert_eq!(c.take(&o.id), Some(o.clone()));
        assert_eq!(c.take(&o.id), None);
    }

    #[test]
    fn it_never_holds_more_than_its_capacity_and_keeps_the_newest() {
        let mut c = DocCache::new(10);
        let orders: Vec<Order> = (0..100).map(|_| doc(1)).collect();
        for o in &orders {
            c.put(o.clone());
            assert!(c.len() <= 10);
        }
        let last = &orders[99];
        assert_eq!(c.take(&last.id).map(|o| o.id), Some(last.id));
        assert_eq!(c.take(&orders[0].id), None, "the oldest are gone");
    }

    #[test]
    fn a_newer_version_replaces_the_cached_one_in_either_generation() {
        let mut c = DocCache::new(4);
        let v1 = doc(1);
        let mut v2 = v1.clone();
        v2.version = 2;
        c.put(v1.clone());
        c.put(doc(1));
        c.put(doc(1)); // v1 is in the old generation now
        c.put(v2.clone());
        assert_eq!(c.take(&v1.id), Some(v2));
        assert_eq!(c.take(&v1.id), None, "no older copy left behind");
    }

    #[test]
    fn capacity_zero_caches_nothing_and_clear_empties() {
        let mut off = DocCache::new(0);
        let o = doc(1);
        off.put(o.clone());
        assert_eq!(off.take(&o.id), None);
        let mut c = DocCache::new(8);
        c.put(o.clone());
        c.clear();
        assert_eq!(c.take(&o.id), None);
    }
}
