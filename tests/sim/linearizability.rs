//! Linearizability of one register's history: Wing and Gong's search with Lowe's memo of
//! (linearized set, state), the shape of porcupine's checker. The simulator checks each key
//! on its own (a history is linearizable iff each key's is: P-compositionality).
//!
//! A write whose outcome the client never learned (timeout, crashed member) has no return:
//! it may take effect at any point after its call, or never. Such a write that no read
//! observed is dropped before the search — taking effect after everything else is always
//! allowed and is the same as never — which keeps the search from forking on each of them.
//!
//! The memo keys the linearized set by a 128-bit Zobrist hash (a random value per operation,
//! XORed in and out as the search goes), not the set itself: no allocation per step. Two
//! different sets colliding — which could prune a branch — has a probability around
//! steps² / 2^128.

use pikv::raft::Prng;
use std::collections::HashSet;

/// What an operation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    /// Wrote a value (every write's value is unique).
    Write(u64),
    /// Read a value (`None`: the key was never written).
    Read(Option<u64>),
}

/// One client operation on the register.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Op {
    /// Who ran it (for the report only: clients' operations need not be sequential).
    pub client: usize,
    /// What it did.
    pub kind: OpKind,
    /// When the client invoked it.
    pub call: u64,
    /// When the client saw the response; `None` when it never learned the outcome.
    pub ret: Option<u64>,
}

/// The register's sequential specification.
fn apply(state: Option<u64>, kind: OpKind) -> Option<Option<u64>> {
    match kind {
        OpKind::Write(v) => Some(Some(v)),
        OpKind::Read(seen) => (seen == state).then_some(state),
    }
}

/// Checks that `ops` (one register, starting unwritten) is linearizable.
pub fn check_register(ops: &[Op]) -> Result<(), String> {
    let observed: HashSet<u64> = ops
        .iter()
        .filter_map(|o| match o.kind {
            OpKind::Read(Some(v)) => Some(v),
            _ => None,
        })
        .collect();
    let ops: Vec<Op> = ops
        .iter()
        .copied()
        .filter(|o| match (o.kind, o.ret) {
            (OpKind::Write(v), None) => observed.contains(&v),
            // A read without a response constrains nothing.
            (OpKind::Read(_), None) => false,
            _ => true,
        })
        .collect();
    let n = ops.len();
    if n == 0 {
        return Ok(());
    }
    // Events in time order, a call before a return at the same instant: operations that
    // touch at an instant count as concurrent (never a false alarm).
    let mut events: Vec<(u64, u8, usize)> = Vec::with_capacity(2 * n);
    for (i, o) in ops.iter().enumerate() {
        events.push((o.call, 0, i));
        events.push((o.ret.unwrap_or(u64::MAX), 1, i));
    }
    events.sort_unstable();
    // A doubly linked list over the events, with head and tail sentinels.
    let head = events.len();
    let tail = head + 1;
    let mut next = vec![0usize; events.len() + 2];
    let mut prev = vec![0usize; events.len() + 2];
    let mut call_node = vec![0usize; n];
    let mut ret_node = vec![0usize; n];
    let mut order = vec![head];
    order.extend(0..events.len());
    order.push(tail);
    for w in order.windows(2) {
        next[w[0]] = w[1];
        prev[w[1]] = w[0];
    }
    for (node, (_, kind, op)) in events.iter().enumerate() {
        if *kind == 0 {
            call_node[*op] = node;
        } else {
            ret_node[*op] = node;
        }
    }
    let mut prng = Prng::new(0x11EA_61AB_1E00_u64.wrapping_add(n as u64));
    let zobrist: Vec<u128> = (0..n)
        .map(|_| (u128::from(prng.next_u64()) << 64) | u128::from(prng.next_u64()))
        .collect();
    let mut search = Search {
        ops: &ops,
        events: &events,
        next,
        prev,
        call_node,
        ret_node,
        head,
        tail,
        zobrist,
        linearized: 0,
        state: None,
        cache: HashSet::new(),
        stack: Vec::new(),
        deepest: 0,
    };
    if search.run() {
        Ok(())
    } else {
        Err(describe(&ops, search.deepest))
    }
}

/// The search's state: the event list still to place, the choices made, and the memo.
struct Search<'a> {
    ops: &'a [Op],
    events: &'a [(u64, u8, usize)],
    next: Vec<usize>,
    prev: Vec<usize>,
    call_node: Vec<usize>,
    ret_node: Vec<usize>,
    head: usize,
    tail: usize,
    zobrist: Vec<u128>,
    /// Zobrist hash of the set of operations linearized so far.
    linearized: u128,
    state: Option<u64>,
    cache: HashSet<(u128, Option<u64>)>,
    /// (operation, state before it, forced): a forced step is a read taken greedily.
    stack: Vec<(usize, Option<u64>, bool)>,
    deepest: usize,
}

impl Search<'_> {
    fn unlink(&mut self, x: usize) {
        let (p, n) = (self.prev[x], self.next[x]);
        self.next[p] = n;
        self.prev[n] = p;
    }

    fn relink(&mut self, x: usize) {
        let (p, n) = (self.prev[x], self.next[x]);
        self.next[p] = x;
        self.prev[n] = x;
    }

    /// Places `op` next, moving to `new_state`, unless that configuration was seen.
    fn place(&mut self, op: usize, new_state: Option<u64>, forced: bool) -> bool {
        let key = self.linearized ^ self.zobrist[op];
        if !self.cache.insert((key, new_state)) {
            return false;
        }
        self.linearized = key;
        self.stack.push((op, self.state, forced));
        self.deepest = self.deepest.max(self.stack.len());
        self.state = new_state;
        self.unlink(self.call_node[op]);
        self.unlink(self.ret_node[op]);
        true
    }

    /// Undoes choices back to the last write placed by choice; returns the event to try
    /// after it, or `None` when there is nothing left to undo.
    fn backtrack(&mut self) -> Option<usize> {
        loop {
            let (op, before, forced) = self.stack.pop()?;
            self.linearized ^= self.zobrist[op];
            self.state = before;
            self.relink(self.ret_node[op]);
            self.relink(self.call_node[op]);
            if !forced {
                return Some(self.next[self.call_node[op]]);
            }
        }
    }

    /// Takes every read that may go now. A read changes no state, so placing an enabled
    /// read at once is never worse than placing it later within its interval: it needs no
    /// choice point. Returns false if it reached a configuration already explored.
    fn place_reads(&mut self) -> bool {
        let mut x = self.next[self.head];
        while x != self.tail && self.events[x].1 == 0 {
            let op = self.events[x].2;
            if self.ops[op].kind == OpKind::Read(self.state) {
                if !self.place(op, self.state, true) {
                    return false;
                }
                x = self.next[self.head];
            } else {
                x = self.next[x];
            }
        }
        true
    }

    fn run(&mut self) -> bool {
        let mut entry = self.next[self.head];
        let mut fresh = true;
        while self.next[self.head] != self.tail {
            if fresh {
                fresh = false;
                if !self.place_reads() {
                    match self.backtrack() {
                        Some(e) => entry = e,
                        None => return false,
                    }
                    continue;
                }
                if self.next[self.head] == self.tail {
                    break;
                }
                entry = self.next[self.head];
            }
            let (_, kind, op) = self.events[entry];
            if kind == 0 {
                if let OpKind::Write(v) = self.ops[op].kind {
                    if apply(self.state, OpKind::Write(v)).is_some()
                        && self.place(op, Some(v), false)
                    {
                        fresh = true;
                        continue;
                    }
                }
                entry = self.next[entry];
            } else {
                // An operation returned without a place in the order so far: undo the last
                // choice and try the next candidate after it.
                match self.backtrack() {
                    Some(e) => entry = e,
                    None => return false,
                }
            }
        }
        true
    }
}

fn describe(ops: &[Op], deepest: usize) -> String {
    let mut sorted: Vec<&Op> = ops.iter().collect();
    sorted.sort_by_key(|o| (o.call, o.ret));
    let mut out = format!(
        "no linearization of {} operations (at most {deepest} could be ordered):",
        ops.len()
    );
    for o in sorted.iter().take(60) {
        let ret = o.ret.map_or("?".to_string(), |r| r.to_string());
        out.push_str(&format!(
            "\n    client {} [{} .. {}] {:?}",
            o.client, o.call, ret, o.kind
        ));
    }
    if sorted.len() > 60 {
        out.push_str(&format!("\n    ... {} more", sorted.len() - 60));
    }
    out
}

#[cfg(test)]
mod tests {
    //! The checker must be able to fail: hand-made histories, good and bad.
    use super::*;

    fn w(client: usize, v: u64, call: u64, ret: Option<u64>) -> Op {
        Op {
            client,
            kind: OpKind::Write(v),
            call,
            ret,
        }
    }

    fn r(client: usize, v: Option<u64>, call: u64, ret: u64) -> Op {
        Op {
            client,
            kind: OpKind::Read(v),
            call,
            ret: Some(ret),
        }
    }

    #[test]
    fn sequential_histories() {
        assert!(check_register(&[w(0, 1, 0, Some(1)), r(0, Some(1), 2, 3)]).is_ok());
        assert!(check_register(&[r(0, None, 0, 1), w(0, 1, 2, Some(3))]).is_ok());
        // A read after a completed write that sees the old value.
        assert!(check_register(&[
            w(0, 1, 0, Some(1)),
            w(0, 2, 2, Some(3)),
            r(1, Some(1), 4, 5)
        ])
        .is_err());
        // A value nobody wrote.
        assert!(check_register(&[r(0, Some(9), 0, 1)]).is_err());
    }

    #[test]
    fn concurrent_operations_may_order_either_way() {
        let write = w(0, 1, 0, Some(10));
        assert!(check_register(&[write, r(1, None, 1, 2)]).is_ok());
        assert!(check_register(&[write, r(1, Some(1), 1, 2)]).is_ok());
        // But two sequential reads cannot see the new value and then the old one.
        assert!(check_register(&[write, r(1, Some(1), 1, 2), r(1, None, 3, 4)]).is_err());
        // Touching at an instant counts as concurrent.
        assert!(check_register(&[w(0, 1, 0, Some(5)), r(1, None, 5, 6)]).is_ok());
    }

    #[test]
    fn writes_with_unknown_outcome_may_or_may_not_happen() {
        // Never observed: fine either way.
        assert!(check_register(&[w(0, 1, 0, None), r(1, None, 5, 6)]).is_ok());
        // Observed after its call: it happened.
        assert!(check_register(&[w(0, 1, 0, None), r(1, Some(1), 5, 6)]).is_ok());
        // Observed before it was even invoked: impossible.
        assert!(check_register(&[r(1, Some(1), 0, 1), w(0, 1, 5, None)]).is_err());
        // Once observed it stays until overwritten.
        assert!(
            check_register(&[w(0, 1, 0, None), r(1, Some(1), 5, 6), r(1, None, 7, 8)]).is_err()
        );
    }

    #[test]
    fn a_lost_acknowledged_write_is_caught() {
        // Write 2 was acknowledged; a later read still sees 1.
        let history = [
            w(0, 1, 0, Some(1)),
            w(1, 2, 2, Some(4)),
            r(2, Some(2), 5, 6),
            r(0, Some(1), 7, 8),
        ];
        let err = check_register(&history).unwrap_err();
        assert!(err.contains("no linearization of 4"), "{err}");
    }

    /// The definition, by brute force: some order of all operations that respects real
    /// time (an operation that returned before another was called comes first) and the
    /// register's specification. Writes without a return may come last, which is the same
    /// as not happening.
    fn brute_force(ops: &[Op]) -> bool {
        fn go(ops: &[Op], placed: &mut Vec<bool>, state: Option<u64>) -> bool {
            if placed.iter().all(|p| *p) {
                return true;
            }
            for i in 0..ops.len() {
                if placed[i] {
                    continue;
                }
                let blocked = (0..ops.len())
                    .any(|j| !placed[j] && j != i && ops[j].ret.is_some_and(|r| r < ops[i].call));
                if blocked {
                    continue;
                }
                if let Some(next) = apply(state, ops[i].kind) {
                    placed[i] = true;
                    if go(ops, placed, next) {
                        return true;
                    }
                    placed[i] = false;
                }
            }
            false
        }
        go(ops, &mut vec![false; ops.len()], None)
    }

    #[test]
    fn agrees_with_brute_force_on_small_random_histories() {
        let mut prng = Prng::new(99);
        let (mut good, mut bad) = (0, 0);
        for _ in 0..4000 {
            // A real register run: each operation takes effect at a point in its interval.
            let n = prng.between(1, 7) as usize;
            let mut ops: Vec<(u64, Op)> = (0..n)
                .map(|k| {
                    let call = prng.below(20);
                    let point = call + prng.below(5);
                    let ret = point + prng.below(5);
                    let kind = if prng.chance(1, 2) {
                        OpKind::Write(k as u64 + 1)
                    } else {
                        OpKind::Read(None)
                    };
                    (
                        point,
                        Op {
                            client: k,
                            kind,
                            call,
                            ret: Some(ret),
                        },
                    )
                })
                .collect();
            ops.sort_by_key(|(point, op)| (*point, op.client));
            let mut state = None;
            for (_, op) in &mut ops {
                match op.kind {
                    OpKind::Write(v) => state = Some(v),
                    OpKind::Read(_) => op.kind = OpKind::Read(state),
                }
            }
            let mut ops: Vec<Op> = ops.into_iter().map(|(_, op)| op).collect();
            // Sometimes a write's outcome is unknown; sometimes a read lies.
            for op in &mut ops {
                if matches!(op.kind, OpKind::Write(_)) && prng.chance(1, 4) {
                    op.ret = None;
                }
                if matches!(op.kind, OpKind::Read(_)) && prng.chance(1, 4) {
                    let v = prng.below(n as u64 + 1);
                    op.kind = OpKind::Read((v > 0).then_some(v));
                }
            }
            let expected = brute_force(&ops);
            assert_eq!(check_register(&ops).is_ok(), expected, "{ops:?}");
            if expected {
                good += 1;
            } else {
                bad += 1;
            }
        }
        assert!(good > 1000 && bad > 500, "{good} linearizable, {bad} not");
    }

    #[test]
    fn many_concurrent_clients_stay_fast() {
        // 3 clients, 300 operations, each read seeing the latest completed write.
        let mut ops = Vec::new();
        let mut t = 0;
        for k in 0..100u64 {
            ops.push(w(0, k + 1, t, Some(t + 3)));
            ops.push(r(1, Some(k + 1), t + 4, t + 6));
            ops.push(w(2, 1000 + k, t + 1, None));
            t += 10;
        }
        assert!(check_register(&ops).is_ok());
    }
}
