//! Majority arithmetic as pure functions (etcd-io/raft's `quorum/majority.go`), so that the
//! rules are checked against a naive reference in isolation.

use super::message::NodeId;
use std::collections::BTreeMap;

/// Members needed for a majority of `voters`.
pub fn majority(voters: usize) -> usize {
    voters / 2 + 1
}

/// The highest index held by a majority, given each voter's acknowledged index (missing
/// voters count as 0).
pub fn committed_index(voters: &[NodeId], acked: impl Fn(NodeId) -> u64) -> u64 {
    if voters.is_empty() {
        return 0;
    }
    let mut matches: Vec<u64> = voters.iter().map(|v| acked(*v)).collect();
    matches.sort_unstable_by(|a, b| b.cmp(a));
    matches[majority(voters.len()) - 1]
}

/// Where an election stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VoteResult {
    /// A majority granted.
    Won,
    /// A majority refused: the election cannot be won.
    Lost,
    /// Still open.
    Pending,
}

/// Counts `votes` (voter → granted) among `voters`; votes of non-voters do not count.
pub fn vote_result(voters: &[NodeId], votes: &BTreeMap<NodeId, bool>) -> VoteResult {
    let need = majority(voters.len());
    let granted = voters
        .iter()
        .filter(|v| votes.get(v) == Some(&true))
        .count();
    let refused = voters
        .iter()
        .filter(|v| votes.get(v) == Some(&false))
        .count();
    if granted >= need {
        VoteResult::Won
    } else if refused > voters.len() - need {
        VoteResult::Lost
    } else {
        VoteResult::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::prng::Prng;

    // The naive definition: the largest index that at least a majority has reached.
    fn naive_committed(acks: &[u64]) -> u64 {
        let need = majority(acks.len());
        (0..=acks.iter().copied().max().unwrap_or(0))
            .rev()
            .find(|i| acks.iter().filter(|a| *a >= i).count() >= need)
            .unwrap_or(0)
    }

    #[test]
    fn committed_index_agrees_with_the_naive_definition() {
        let mut prng = Prng::new(1);
        for _ in 0..2000 {
            let n = prng.between(1, 7) as usize;
            let acks: Vec<u64> = (0..n).map(|_| prng.below(12)).collect();
            let voters: Vec<NodeId> = (1..=n as u64).collect();
            let got = committed_index(&voters, |v| acks[(v - 1) as usize]);
            assert_eq!(got, naive_committed(&acks), "acks {acks:?}");
        }
    }

    #[test]
    fn votes_win_lose_or_wait() {
        let voters = [1, 2, 3];
        let mut votes = BTreeMap::new();
        votes.insert(1, true);
        assert_eq!(vote_result(&voters, &votes), VoteResult::Pending);
        votes.insert(2, false);
        assert_eq!(vote_result(&voters, &votes), VoteResult::Pending);
        votes.insert(3, true);
        assert_eq!(vote_result(&voters, &votes), VoteResult::Won);
        votes.insert(3, false);
        assert_eq!(vote_result(&voters, &votes), VoteResult::Lost);
        votes.insert(9, true);
        assert_eq!(
            vote_result(&voters, &votes),
            VoteResult::Lost,
            "9 is no voter"
        );
    }
}
