//! Request ids and the table of calls awaiting a response.
//!
//! fastrpc numbers requests per connection from 1 upwards, wraps past
//! `u32::MAX` back to 1 (0 means fire-and-forget), and must never reuse an id
//! that is still pending. Responses may come back in any order.
//!
//! [`PendingTable`] does this without hashing or allocating per call: it is
//! a ring of `2^k >= limit` slots, and id `n` lives in slot `n mod 2^k`. A new
//! id takes the next number whose slot is free, skipping numbers whose slot
//! is still held by an older, slower call, so a pending id is never reused.
//! Since fewer than `limit` calls are pending, a free slot is always within
//! `2^k` steps. A response whose id is not in its slot is unknown (late,
//! cancelled, or bogus) and is dropped, as the Go client does.

/// Calls awaiting a response, each with a caller-chosen token `T` (a channel,
/// a waker, an index: whatever the backend needs to complete the call).
#[derive(Debug)]
pub struct PendingTable<T> {
    slots: Box<[Option<(u32, T)>]>,
    mask: usize,
    len: usize,
    limit: usize,
    next_id: u32,
}

impl<T> PendingTable<T> {
    /// A table that holds at most `limit` pending calls.
    pub fn new(limit: usize) -> Self {
        let size = limit.max(1).next_power_of_two();
        PendingTable { slots: (0..size).map(|_| None).collect(), mask: size - 1, len: 0, limit, next_id: 1 }
    }

    /// Pending calls.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no call is pending.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The most calls that may be pending at once.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Registers a call and returns its new id, or gives the token back when
    /// `limit` calls are already pending.
    pub fn insert(&mut self, token: T) -> Result<u32, T> {
        if self.len >= self.limit {
            return Err(token);
        }
        loop {
            let id = self.next_id;
            self.next_id = match id.wrapping_add(1) {
                0 => 1,
                next => next,
            };
            let slot = &mut self.slots[id as usize & self.mask];
            if slot.is_none() {
                *slot = Some((id, token));
                self.len += 1;
                return Ok(id);
            }
        }
    }

    /// Removes and returns the call with this id, if it is pending.
    pub fn remove(&mut self, id: u32) -> Option<T> {
        let slot = &mut self.slots[id as usize & self.mask];
        match slot {
            Some((held, _)) if *held == id && id != 0 => {
                self.len -= 1;
                slot.take().map(|(_, token)| token)
            }
            _ => None,
        }
    }

    /// Whether a call with this id is pending.
    pub fn contains(&self, id: u32) -> bool {
        id != 0 && matches!(self.slots[id as usize & self.mask], Some((held, _)) if held == id)
    }

    /// Removes every pending call (for example to fail them all when the
    /// connection dies), in slot order.
    pub fn drain(&mut self) -> impl Iterator<Item = (u32, T)> + '_ {
        self.len = 0;
        self.slots.iter_mut().filter_map(Option::take)
    }

    /// Removes every pending call whose token `over` says is over (its
    /// deadline passed, say), handing each to `each`. It looks at every slot
    /// of the table, so a caller sweeps now and then, not per call.
    pub fn remove_where(&mut self, mut over: impl FnMut(&T) -> bool, mut each: impl FnMut(u32, T)) {
        if self.len == 0 {
            return;
        }
        for slot in self.slots.iter_mut() {
            if matches!(slot, Some((_, token)) if over(token)) {
                let (id, token) = slot.take().expect("matched just above");
                self.len -= 1;
                each(id, token);
            }
        }
    }

    /// Sets the next id to hand out (for tests of wrap-around).
    #[doc(hidden)]
    pub fn set_next_id(&mut self, id: u32) {
        self.next_id = id.max(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_count_from_one_and_wrap_past_zero() {
        let mut t = PendingTable::new(8);
        assert_eq!(t.insert(()), Ok(1));
        assert_eq!(t.insert(()), Ok(2));
        t.set_next_id(u32::MAX);
        assert_eq!(t.insert(()), Ok(u32::MAX));
        assert_eq!(t.insert(()), Ok(3), "0 is never an id; 1 and 2 are pending, so 3 is next");
    }

    #[test]
    fn a_pending_id_is_never_reused_and_the_limit_holds() {
        let mut t = PendingTable::new(3);
        let a = t.insert('a').unwrap();
        let b = t.insert('b').unwrap();
        let c = t.insert('c').unwrap();
        assert_eq!(t.insert('d'), Err('d'));
        assert_eq!(t.remove(b), Some('b'));
        // Cycle through many ids while `a` and `c` stay pending: they are never handed out again.
        for _ in 0..10_000 {
            let id = t.insert('x').unwrap();
            assert!(id != a && id != c && id != 0);
            assert_eq!(t.remove(id), Some('x'));
        }
        assert_eq!(t.remove(a), Some('a'));
        assert_eq!(t.remove(a), None, "a second response with the same id is unknown");
        assert_eq!(t.remove(0), None);
        assert_eq!(t.remove(12345), None);
        assert_eq!(t.len(), 1);
        assert_eq!(t.drain().collect::<Vec<_>>(), vec![(c, 'c')]);
        assert!(t.is_empty());
    }

    #[test]
    fn a_sweep_removes_only_what_is_over() {
        let mut table = PendingTable::new(8);
        let ids: Vec<u32> = (0..6).map(|deadline| table.insert(deadline).unwrap()).collect();
        let mut over = Vec::new();
        table.remove_where(|deadline| *deadline < 3, |id, deadline| over.push((id, deadline)));
        assert_eq!(over, [(ids[0], 0), (ids[1], 1), (ids[2], 2)]);
        assert_eq!(table.len(), 3);
        assert!(!table.contains(ids[0]) && table.contains(ids[3]));
        // Ids of swept calls are free again; the others are still pending.
        assert_eq!(table.remove(ids[4]), Some(4));
        assert_eq!(table.remove(ids[1]), None);
    }

    #[test]
    fn zero_limit_refuses_every_call() {
        let mut t = PendingTable::new(0);
        assert_eq!(t.insert(1), Err(1));
    }
}
