//! Unit tests of the core's rules, each built as a small cluster (or a lone member) in the
//! state the rule needs, driven by explicit inputs, and checked by its exact outputs
//! (etcd-io/raft's `raft_paper_test.go` style: each test cites the rule it checks).

use super::election::Campaign;
use super::*;
use std::collections::{BTreeMap, BTreeSet};

fn config() -> Config {
    Config {
        election_ticks: 10,
        heartbeat_ticks: 1,
        seed: 1,
        max_inflight_msgs: 256,
        max_entries_per_msg: 64,
        broken_rule: None,
    }
}

fn entries_of_terms(terms: &[u64]) -> Vec<Entry> {
    terms
        .iter()
        .enumerate()
        .map(|(k, t)| Entry {
            term: *t,
            index: k as u64 + 1,
            payload: Payload::Command(vec![k as u8]),
        })
        .collect()
}

fn restarted(terms: &[u64], term: u64, commit: u64) -> InitialState {
    InitialState {
        hard_state: HardState {
            term,
            vote: 0,
            commit,
        },
        applied: commit,
        compacted_index: 0,
        compacted_term: 0,
        entries: entries_of_terms(terms),
    }
}

/// Persists every Ready at once (the simplest driver) and returns every message released.
/// Read states stay with the member, for [`Raft::take_read_states`].
fn drive(raft: &mut Raft) -> Vec<Message> {
    let mut out = raft.take_messages();
    let mut reads = Vec::new();
    while let Some(rd) = raft.ready() {
        out.extend(rd.messages.iter().cloned());
        reads.extend(rd.read_states.iter().copied());
        let durable = rd
            .entries
            .last()
            .map_or(raft.persisted_index(), |e| e.index);
        let applied = rd
            .committed_entries
            .last()
            .map_or(raft.applied_index(), |e| e.index);
        raft.advance(Persisted {
            durable_index: durable,
            applied_index: applied,
        });
        out.extend(raft.take_messages());
    }
    reads.append(&mut raft.read_states);
    raft.read_states = reads;
    out
}

/// Members on a synchronous network whose links can be cut; every message delivered is
/// recorded for the test to inspect.
struct Cluster {
    nodes: BTreeMap<NodeId, Raft>,
    cut: BTreeSet<(NodeId, NodeId)>,
    delivered: Vec<Message>,
}

impl Cluster {
    fn new(n: u64) -> Cluster {
        Cluster::restarted(
            (1..=n).map(|_| InitialState::default()).collect(),
            &config(),
        )
    }

    fn restarted(initial: Vec<InitialState>, config: &Config) -> Cluster {
        let ids: Vec<NodeId> = (1..=initial.len() as u64).collect();
        let nodes = ids
            .iter()
            .zip(initial)
            .map(|(id, init)| (*id, Raft::new(*id, ids.clone(), init, config)))
            .collect();
        Cluster {
            nodes,
            cut: BTreeSet::new(),
            delivered: Vec::new(),
        }
    }

    fn node(&mut self, id: NodeId) -> &mut Raft {
        self.nodes.get_mut(&id).expect("test member")
    }

    fn isolate(&mut self, id: NodeId) {
        for other in self.nodes.keys().copied().collect::<Vec<_>>() {
            if other != id {
                self.cut.insert((id, other));
                self.cut.insert((other, id));
            }
        }
    }

    fn heal(&mut self) {
        self.cut.clear();
    }

    /// Delivers messages (those `pass` lets through, over uncut links) until none is left.
    fn stabilize_with(&mut self, pass: impl Fn(&Message) -> bool) {
        loop {
            let mut batch = Vec::new();
            for raft in self.nodes.values_mut() {
                batch.extend(drive(raft));
            }
            if batch.is_empty() {
                return;
            }
            for m in batch {
                if self.cut.contains(&(m.from, m.to)) || !pass(&m) {
                    continue;
                }
                self.delivered.push(m.clone());
                if let Some(to) = self.nodes.get_mut(&m.to) {
                    to.step(m);
                }
            }
        }
    }

    fn stabilize(&mut self) {
        self.stabilize_with(|_| true);
    }

    fn elect(&mut self, id: NodeId) {
        self.node(id).campaign(Campaign::PreVote);
        self.stabilize();
        assert_eq!(self.node(id).role(), Role::Leader, "{id} should lead");
    }

    fn tick(&mut self, id: NodeId, n: u32) {
        for _ in 0..n {
            self.node(id).tick();
            self.stabilize();
        }
    }
}

fn msg(from: NodeId, to: NodeId, term: u64, body: MessageBody) -> Message {
    Message {
        from,
        to,
        term,
        body,
    }
}

// --- a single voter: the server's configuration today -------------------------------------

fn persist_all(raft: &mut Raft) -> Ready {
    let rd = raft.ready().unwrap_or_default();
    let durable = rd.entries.last().map_or(raft.last_index(), |e| e.index);
    let applied = rd
        .committed_entries
        .last()
        .map_or(raft.applied_index(), |e| e.index);
    raft.advance(Persisted {
        durable_index: durable,
        applied_index: applied,
    });
    rd
}

#[test]
fn single_voter_elects_itself_and_commits_its_noop_with_the_append() {
    let mut raft = Raft::new(1, vec![1], InitialState::default(), &config());
    assert_eq!(raft.role(), Role::Leader);
    let rd = persist_all(&mut raft);
    assert_eq!(
        rd.hard_state.map(|h| (h.term, h.vote, h.commit)),
        Some((1, 1, 1))
    );
    assert_eq!(rd.entries.len(), 1);
    assert_eq!(rd.committed_entries, rd.entries);
    assert!(rd.messages.is_empty());
    assert!(raft.ready().is_none(), "nothing to do when idle");
}

#[test]
fn single_voter_batches_proposals_into_one_ready_in_order() {
    let mut raft = Raft::new(1, vec![1], InitialState::default(), &config());
    persist_all(&mut raft);
    let a = raft.propose(b"a".to_vec()).unwrap();
    let b = raft.propose(b"b".to_vec()).unwrap();
    assert_eq!((a, b), (2, 3));
    let rd = persist_all(&mut raft);
    let idx: Vec<u64> = rd.committed_entries.iter().map(|e| e.index).collect();
    assert_eq!(idx, vec![2, 3]);
    assert_eq!(raft.applied_index(), 3);
}

#[test]
fn single_voter_restarts_in_a_new_term_after_the_durable_log() {
    let initial = InitialState {
        hard_state: HardState {
            term: 4,
            vote: 1,
            commit: 9,
        },
        applied: 9,
        compacted_index: 9,
        compacted_term: 4,
        entries: Vec::new(),
    };
    let mut raft = Raft::new(1, vec![1], initial, &config());
    assert_eq!(raft.term(), 5);
    let rd = persist_all(&mut raft);
    assert_eq!(rd.entries[0].index, 10);
    assert_eq!(rd.entries[0].term, 5);
}

#[test]
fn single_voter_applies_durable_entries_it_had_not_applied_before_a_restart() {
    let mut initial = restarted(&[1, 1, 1], 1, 3);
    initial.applied = 1;
    let mut raft = Raft::new(1, vec![1], initial, &config());
    let rd = persist_all(&mut raft);
    let idx: Vec<u64> = rd.committed_entries.iter().map(|e| e.index).collect();
    assert_eq!(idx, vec![2, 3, 4], "2 and 3 from disk, 4 the new no-op");
}

#[test]
fn single_voter_forgets_a_batch_that_failed_to_persist() {
    let mut raft = Raft::new(1, vec![1], InitialState::default(), &config());
    persist_all(&mut raft);
    raft.propose(b"x".to_vec()).unwrap();
    let rd = raft.ready().unwrap();
    assert_eq!(rd.entries[0].index, 2);
    raft.persist_failed();
    assert_eq!(raft.last_index(), 1);
    assert_eq!(raft.propose(b"y".to_vec()).unwrap(), 2);
    let rd = persist_all(&mut raft);
    assert_eq!(rd.committed_entries.len(), 1);
    assert!(rd.hard_state.is_some());
}

#[test]
fn single_voter_answers_reads_at_once_and_compacts_what_is_applied() {
    let mut raft = Raft::new(1, vec![1], InitialState::default(), &config());
    persist_all(&mut raft);
    raft.read_index(5).unwrap();
    assert_eq!(
        raft.take_read_states(),
        vec![ReadState { ctx: 5, index: 1 }]
    );
    raft.propose(b"a".to_vec()).unwrap();
    persist_all(&mut raft);
    raft.compact(raft.applied_index());
    assert_eq!((raft.first_index(), raft.last_index()), (3, 2));
    assert_eq!(raft.propose(b"b".to_vec()).unwrap(), 3);
}

// --- elections ----------------------------------------------------------------------------

#[test]
fn three_members_elect_a_leader_that_commits_its_noop() {
    let mut c = Cluster::new(3);
    c.elect(1);
    for id in 1..=3 {
        let r = c.node(id);
        assert_eq!((r.term(), r.leader(), r.commit_index()), (1, Some(1), 1));
    }
}

#[test]
fn an_election_timeout_is_drawn_from_one_to_two_election_timeouts() {
    let mut raft = Raft::new(1, vec![1, 2, 3], InitialState::default(), &config());
    let mut seen = BTreeSet::new();
    for _ in 0..200 {
        raft.reset_timers();
        assert!((10..20).contains(&raft.randomized_timeout));
        seen.insert(raft.randomized_timeout);
    }
    assert!(seen.len() > 5, "timeouts should vary: {seen:?}");
    // The same seed gives the same draws.
    let mut a = Raft::new(1, vec![1, 2, 3], InitialState::default(), &config());
    let mut b = Raft::new(1, vec![1, 2, 3], InitialState::default(), &config());
    for _ in 0..20 {
        a.reset_timers();
        b.reset_timers();
        assert_eq!(a.randomized_timeout, b.randomized_timeout);
    }
}

#[test]
fn a_follower_campaigns_after_its_timeout_with_a_pre_vote_first() {
    let mut raft = Raft::new(2, vec![1, 2, 3], InitialState::default(), &config());
    let timeout = raft.randomized_timeout;
    for _ in 0..timeout - 1 {
        raft.tick();
    }
    assert_eq!(raft.role(), Role::Follower);
    raft.tick();
    assert_eq!(raft.role(), Role::PreCandidate);
    assert_eq!(raft.term(), 0, "a pre-vote does not bump the term");
    let msgs = raft.take_messages();
    assert_eq!(msgs.len(), 2);
    for m in msgs {
        assert_eq!(m.term, 1, "pre-vote asks about the next term");
        assert_eq!(
            m.body,
            MessageBody::PreVote {
                last_index: 0,
                last_term: 0
            }
        );
    }
}

// Raft thesis §9.6: a member that heard from the leader within the election timeout refuses
// pre-votes, so a member back from a partition cannot depose a healthy leader.
#[test]
fn pre_vote_is_refused_while_a_leader_is_alive() {
    let mut c = Cluster::new(3);
    c.elect(1);
    c.node(2).step(msg(
        3,
        2,
        2,
        MessageBody::PreVote {
            last_index: 1,
            last_term: 1,
        },
    ));
    let out = c.node(2).take_messages();
    assert_eq!(
        out,
        vec![msg(
            2,
            3,
            1,
            MessageBody::PreVoteResponse { granted: false }
        )]
    );
    assert_eq!(c.node(2).term(), 1);

    // Member 3 cut off keeps timing out, but never bumps its term...
    c.isolate(3);
    c.tick(3, 60);
    assert_eq!(c.node(3).term(), 1);
    assert_ne!(c.node(3).role(), Role::Leader);
    // ...and once back it follows the same leader in the same term.
    c.heal();
    c.tick(1, 1);
    assert_eq!(
        (c.node(3).role(), c.node(3).leader()),
        (Role::Follower, Some(1))
    );
    assert_eq!((c.node(1).role(), c.node(1).term()), (Role::Leader, 1));
}

#[test]
fn a_vote_with_a_higher_term_is_ignored_within_the_lease() {
    let mut c = Cluster::new(3);
    c.elect(1);
    let vote = MessageBody::Vote {
        last_index: 5,
        last_term: 5,
        transfer: false,
    };
    c.node(2).step(msg(3, 2, 7, vote));
    assert!(c.node(2).take_messages().is_empty());
    assert_eq!(c.node(2).term(), 1);
    // Once the lease is over (no leader heard for an election timeout), it counts.
    for _ in 0..10 {
        c.node(2).election_elapsed += 1;
    }
    c.node(2).step(msg(
        3,
        2,
        7,
        MessageBody::Vote {
            last_index: 5,
            last_term: 5,
            transfer: false,
        },
    ));
    assert_eq!(c.node(2).term(), 7);
}

// Raft §5.4.1: a vote goes only to a log at least as up to date.
#[test]
fn votes_go_only_to_logs_at_least_as_up_to_date() {
    let mut raft = Raft::new(2, vec![1, 2, 3], restarted(&[1, 2, 2], 2, 0), &config());
    let ask = |last_index, last_term| {
        msg(
            1,
            2,
            3,
            MessageBody::Vote {
                last_index,
                last_term,
                transfer: false,
            },
        )
    };
    raft.step(ask(5, 1));
    assert_eq!(raft.hard_state().vote, 0, "older last term");
    assert_eq!(
        raft.take_messages(),
        vec![msg(
            2,
            1,
            3,
            MessageBody::VoteResponse {
                granted: false,
                clock: 0
            }
        )]
    );
    raft.step(ask(2, 2));
    assert_eq!(raft.hard_state().vote, 0, "shorter log, same last term");
    raft.take_messages();
    raft.step(ask(3, 2));
    assert_eq!(raft.hard_state().vote, 1);
    // §5.2: one vote per term.
    raft.step(msg(
        3,
        2,
        3,
        MessageBody::Vote {
            last_index: 9,
            last_term: 9,
            transfer: false,
        },
    ));
    drive(&mut raft);
    assert_eq!(raft.hard_state().vote, 1);
}

// The persistence rule: term and vote are durable before the grant goes out.
#[test]
fn a_vote_is_granted_only_after_the_vote_is_reported_durable() {
    let mut raft = Raft::new(2, vec![1, 2, 3], InitialState::default(), &config());
    raft.step(msg(
        1,
        2,
        1,
        MessageBody::Vote {
            last_index: 0,
            last_term: 0,
            transfer: false,
        },
    ));
    assert!(raft.take_messages().is_empty(), "nothing before the Ready");
    let rd = raft.ready().expect("the vote must be persisted");
    assert_eq!(
        rd.hard_state,
        Some(HardState {
            term: 1,
            vote: 1,
            commit: 0
        })
    );
    assert!(rd.messages.is_empty(), "nothing with the Ready either");
    assert!(
        raft.take_messages().is_empty(),
        "nor while it is being written"
    );
    raft.advance(Persisted {
        durable_index: 0,
        applied_index: 0,
    });
    assert_eq!(
        raft.take_messages(),
        vec![msg(
            2,
            1,
            1,
            MessageBody::VoteResponse {
                granted: true,
                clock: 0
            }
        )]
    );
}

#[test]
fn a_vote_is_never_granted_if_persisting_it_failed() {
    let mut raft = Raft::new(2, vec![1, 2, 3], InitialState::default(), &config());
    raft.step(msg(
        1,
        2,
        1,
        MessageBody::Vote {
            last_index: 0,
            last_term: 0,
            transfer: false,
        },
    ));
    let _ = raft.ready();
    raft.persist_failed();
    assert!(raft.take_messages().is_empty());
    let rd = raft.ready().expect("the hard state is handed out again");
    assert_eq!(rd.hard_state.map(|h| h.vote), Some(1));
}

#[test]
fn a_candidate_counts_its_own_vote_only_once_it_is_durable() {
    let mut raft = Raft::new(1, vec![1, 2, 3], InitialState::default(), &config());
    raft.campaign(Campaign::Election);
    assert_eq!(raft.role(), Role::Candidate);
    raft.step(msg(
        2,
        1,
        1,
        MessageBody::VoteResponse {
            granted: true,
            clock: 0,
        },
    ));
    assert_eq!(raft.role(), Role::Candidate, "1 of 3 votes so far");
    drive(&mut raft);
    assert_eq!(raft.role(), Role::Leader);
}

#[test]
fn an_append_is_acknowledged_only_after_its_entries_are_durable() {
    let mut raft = Raft::new(2, vec![1, 2, 3], InitialState::default(), &config());
    let append = MessageBody::Append {
        prev_index: 0,
        prev_term: 0,
        entries: entries_of_terms(&[1, 1]),
        commit: 0,
        clock: 0,
    };
    raft.step(msg(1, 2, 1, append));
    assert!(raft.take_messages().is_empty());
    let rd = raft.ready().unwrap();
    assert_eq!(rd.entries.len(), 2);
    assert!(rd.messages.is_empty());
    raft.advance(Persisted {
        durable_index: 2,
        applied_index: 0,
    });
    assert_eq!(
        raft.take_messages(),
        vec![msg(2, 1, 1, MessageBody::AppendAccepted { match_index: 2 })]
    );
}

#[test]
fn an_acknowledgement_of_entries_overwritten_before_they_were_durable_is_dropped() {
    let mut raft = Raft::new(3, vec![1, 2, 3], InitialState::default(), &config());
    raft.step(msg(
        1,
        3,
        1,
        MessageBody::Append {
            prev_index: 0,
            prev_term: 0,
            entries: entries_of_terms(&[1, 1]),
            commit: 0,
            clock: 0,
        },
    ));
    // A newer leader overwrites entry 2 before any of it was handed out.
    let mut newer = entries_of_terms(&[1, 2]);
    newer.remove(0);
    raft.step(msg(
        2,
        3,
        2,
        MessageBody::Append {
            prev_index: 1,
            prev_term: 1,
            entries: newer,
            commit: 0,
            clock: 0,
        },
    ));
    let out = drive(&mut raft);
    assert_eq!(
        out,
        vec![msg(3, 2, 2, MessageBody::AppendAccepted { match_index: 2 })],
        "no acknowledgement to leader 1 of its entry 2, which never became durable"
    );
}

// Raft thesis §6.2: check-quorum.
#[test]
fn check_quorum_steps_down_a_leader_cut_off_from_the_quorum() {
    let mut c = Cluster::new(3);
    c.elect(1);
    c.isolate(1);
    // The first check counts the followers heard before the cut; the second finds none.
    c.tick(1, 20);
    assert_eq!(c.node(1).role(), Role::Follower);
    assert_eq!(c.node(1).leader(), None);
    assert_eq!(c.node(1).term(), 1, "stepping down moves no term");
}

#[test]
fn a_leader_that_hears_from_a_quorum_stays() {
    let mut c = Cluster::new(3);
    c.elect(1);
    c.cut.insert((1, 3));
    c.cut.insert((3, 1));
    c.tick(1, 50);
    assert_eq!((c.node(1).role(), c.node(1).term()), (Role::Leader, 1));
}

// --- replication --------------------------------------------------------------------------

// Raft §5.3 with the conflict hint: the follower names the conflicting term and where it
// starts, and the leader skips that whole term in one round trip.
#[test]
fn a_conflicting_follower_gets_a_hint_and_the_leader_skips_the_term() {
    let mut c = Cluster::restarted(
        vec![
            restarted(&[1, 1, 3, 3, 3], 3, 0),
            restarted(&[1, 1, 2, 2, 2, 2], 3, 0),
            restarted(&[1, 1, 3, 3, 3], 3, 0),
        ],
        &config(),
    );
    c.elect(1);
    let to_2: Vec<&Message> = c
        .delivered
        .iter()
        .filter(|m| (m.from, m.to) == (1, 2) || (m.from, m.to) == (2, 1))
        .filter(|m| {
            matches!(
                m.body,
                MessageBody::Append { .. }
                    | MessageBody::AppendRejected { .. }
                    | MessageBody::AppendAccepted { .. }
            )
        })
        .collect();
    let MessageBody::Append { prev_index, .. } = &to_2[0].body else {
        panic!("{to_2:?}")
    };
    assert_eq!(*prev_index, 5);
    assert_eq!(
        to_2[1].body,
        MessageBody::AppendRejected {
            rejected_index: 5,
            hint_index: 3,
            hint_term: 2
        }
    );
    // The leader has no term 2: it resumes at the follower's first entry of that term.
    let MessageBody::Append {
        prev_index,
        prev_term,
        entries,
        ..
    } = &to_2[2].body
    else {
        panic!("{to_2:?}")
    };
    assert_eq!((*prev_index, *prev_term, entries.len()), (2, 1, 4));
    assert_eq!(to_2[3].body, MessageBody::AppendAccepted { match_index: 6 });
    let leader_log = c.node(1).log_entries().to_vec();
    assert_eq!(c.node(2).log_entries(), &leader_log[..]);
    assert_eq!(c.node(2).commit_index(), 6);
}

#[test]
fn a_short_follower_hints_its_last_index() {
    let mut raft = Raft::new(2, vec![1, 2, 3], restarted(&[1, 1], 1, 0), &config());
    raft.step(msg(
        1,
        2,
        2,
        MessageBody::Append {
            prev_index: 7,
            prev_term: 2,
            entries: Vec::new(),
            commit: 0,
            clock: 0,
        },
    ));
    assert_eq!(
        raft.take_messages(),
        vec![msg(
            2,
            1,
            2,
            MessageBody::AppendRejected {
                rejected_index: 7,
                hint_index: 2,
                hint_term: 0
            }
        )]
    );
}

#[test]
fn the_leader_with_the_conflicting_term_resumes_after_its_last_entry_of_it() {
    // Leader log [1, 2, 2, 4], follower [1, 2, 2, 3, 3]: the hint names term 3 from index 4;
    // the leader has no term 3 and resumes at 4. With a hint of term 2 (first index 2) the
    // leader resumes after its own last entry of term 2, index 3.
    let mut c = Cluster::restarted(
        vec![
            restarted(&[1, 2, 2, 4], 4, 0),
            restarted(&[1, 2, 2, 3, 3], 4, 0),
            restarted(&[1, 2, 2, 4], 4, 0),
        ],
        &config(),
    );
    c.elect(1);
    let leader = c.node(1);
    let pr = leader.progress.get_mut(&2).expect("follower");
    pr.match_index = 1;
    pr.become_probe();
    pr.next_index = 6;
    leader.step(msg(
        2,
        1,
        5,
        MessageBody::AppendRejected {
            rejected_index: 5,
            hint_index: 2,
            hint_term: 2,
        },
    ));
    assert_eq!(leader.progress[&2].next_index, 4);
}

// Raft §5.4.2 and Figure 8: a leader does not commit an entry of an earlier term by counting
// its replicas; it commits it only with an entry of its own term.
#[test]
fn an_entry_of_an_older_term_is_not_committed_by_counting_replicas() {
    // Entry 2 (term 2) is on members 1 and 2, not committed; 1 leads term 4.
    let mut c = Cluster::restarted(
        vec![
            restarted(&[1, 2], 3, 1),
            restarted(&[1, 2], 3, 1),
            restarted(&[1], 3, 1),
        ],
        &config(),
    );
    let no_appends = |m: &Message| {
        !matches!(
            m.body,
            MessageBody::Append { .. } | MessageBody::AppendAccepted { .. }
        )
    };
    c.node(1).campaign(Campaign::PreVote);
    c.stabilize_with(no_appends);
    let leader = c.node(1);
    assert_eq!(
        (leader.role(), leader.term(), leader.last_index()),
        (Role::Leader, 4, 3)
    );
    // Members 2 and 3 hold entry 2 (a majority) but not the no-op at 3.
    for from in [2, 3] {
        leader.step(msg(
            from,
            1,
            4,
            MessageBody::AppendAccepted { match_index: 2 },
        ));
    }
    drive(leader);
    assert_eq!(leader.commit_index(), 1, "entry 2 is of term 2, not 4");
    leader.step(msg(2, 1, 4, MessageBody::AppendAccepted { match_index: 3 }));
    drive(leader);
    assert_eq!(
        leader.commit_index(),
        3,
        "the no-op of term 4 commits entry 2 with it"
    );
}

#[test]
fn the_leader_counts_its_own_entries_only_once_durable() {
    let mut c = Cluster::new(3);
    c.elect(1);
    let leader = c.node(1);
    let index = leader.propose(b"x".to_vec()).unwrap();
    let rd = leader.ready().unwrap();
    // Member 2 holds it durably; the leader's own copy is still being written.
    leader.step(msg(
        2,
        1,
        1,
        MessageBody::AppendAccepted { match_index: index },
    ));
    assert_eq!(leader.commit_index(), index - 1, "1 of 3 durably");
    leader.advance(Persisted {
        durable_index: rd.entries[0].index,
        applied_index: 0,
    });
    assert_eq!(leader.commit_index(), index, "2 of 3 durably");
    // The followers alone are a quorum too.
    let index = leader.propose(b"y".to_vec()).unwrap();
    let _rd = leader.ready().unwrap();
    for from in [2, 3] {
        leader.step(msg(
            from,
            1,
            1,
            MessageBody::AppendAccepted { match_index: index },
        ));
    }
    assert_eq!(leader.commit_index(), index);
}

#[test]
fn the_leader_keeps_at_most_max_inflight_appends_to_a_follower() {
    let cfg = Config {
        max_inflight_msgs: 4,
        max_entries_per_msg: 1,
        ..config()
    };
    let mut c = Cluster::restarted(vec![InitialState::default(); 3], &cfg);
    c.elect(1);
    assert_eq!(c.node(1).progress[&2].state, ProgressState::Replicate);
    let mut appends_to_2 = Vec::new();
    for k in 0..20u8 {
        c.node(1).propose(vec![k]).unwrap();
        for m in drive(c.node(1)) {
            if let (2, MessageBody::Append { entries, .. }) = (m.to, &m.body) {
                appends_to_2.push(entries.len());
            }
        }
    }
    assert_eq!(appends_to_2, vec![1; 4], "four in flight, then paused");
    // One acknowledgement frees one slot.
    let first = c.node(1).last_index() - 19;
    c.node(1).step(msg(
        2,
        1,
        1,
        MessageBody::AppendAccepted { match_index: first },
    ));
    let more = drive(c.node(1))
        .into_iter()
        .filter(|m| m.to == 2 && matches!(m.body, MessageBody::Append { .. }))
        .count();
    assert_eq!(more, 1);
}

#[test]
fn a_partial_append_waits_for_the_one_in_flight_and_a_full_one_does_not() {
    let mut c = Cluster::new(3);
    c.elect(1);
    let _ = drive(c.node(1));
    let appends_to_2 = |msgs: Vec<Message>| -> Vec<usize> {
        msgs.into_iter()
            .filter_map(|m| match (m.to, &m.body) {
                (2, MessageBody::Append { entries, .. }) => Some(entries.len()),
                _ => None,
            })
            .collect()
    };
    c.node(1).propose(vec![1]).unwrap();
    assert_eq!(
        appends_to_2(drive(c.node(1))),
        vec![1],
        "nothing in flight: at once"
    );
    let first = c.node(1).last_index();
    for k in 2..5u8 {
        c.node(1).propose(vec![k]).unwrap();
        assert_eq!(appends_to_2(drive(c.node(1))), Vec::<usize>::new(), "held");
    }
    // The acknowledgement sends what came meanwhile, in one append.
    c.node(1).step(msg(
        2,
        1,
        1,
        MessageBody::AppendAccepted { match_index: first },
    ));
    assert_eq!(appends_to_2(drive(c.node(1))), vec![3]);
    // With that one in flight, a full append's worth streams.
    for k in 0..64u8 {
        c.node(1).propose(vec![k]).unwrap();
    }
    assert_eq!(appends_to_2(drive(c.node(1))), vec![64]);
}

#[test]
fn a_leader_holds_its_write_back_until_a_quorum_could_acknowledge_the_entries() {
    let mut c = Cluster::new(3);
    c.elect(1);
    let _ = drive(c.node(1));
    // Idle followers: the append goes at once, and so does the write.
    c.node(1).propose(vec![1]).unwrap();
    assert!(!c.node(1).own_write_can_wait(), "sent to both: write now");
    let _ = drive(c.node(1));
    let first = c.node(1).last_index();
    // Each follower has an append in flight: the next entries wait for an ack.
    c.node(1).propose(vec![2]).unwrap();
    assert!(c.node(1).own_write_can_wait(), "no follower was sent it");
    assert!(
        c.node(1)
            .take_messages()
            .iter()
            .all(|m| !matches!(m.body, MessageBody::Append { .. })),
        "held behind the appends in flight"
    );
    // An ack sends them on to that follower: a quorum can now hold them.
    c.node(1).step(msg(
        2,
        1,
        1,
        MessageBody::AppendAccepted { match_index: first },
    ));
    assert!(
        !c.node(1).own_write_can_wait(),
        "sent to one follower: write now"
    );
    let rd = c.node(1).ready().expect("the held write");
    assert_eq!(rd.entries.len(), 1);
    // A single voter never waits.
    let mut single = Raft::new(1, vec![1], InitialState::default(), &config());
    let _ = persist_all(&mut single);
    single.propose(vec![1]).unwrap();
    assert!(!single.own_write_can_wait());
}

#[test]
fn proposals_of_one_pass_share_one_append_per_follower() {
    let mut c = Cluster::new(3);
    c.elect(1);
    let _ = drive(c.node(1));
    for k in 0..5u8 {
        c.node(1).propose(vec![k]).unwrap();
    }
    c.node(1).step(msg(
        2,
        1,
        1,
        MessageBody::Propose {
            request: 9,
            command: vec![9],
        },
    ));
    let appends: Vec<(NodeId, usize)> = drive(c.node(1))
        .into_iter()
        .filter_map(|m| match &m.body {
            MessageBody::Append { entries, .. } => Some((m.to, entries.len())),
            _ => None,
        })
        .collect();
    assert_eq!(
        appends,
        vec![(2, 6), (3, 6)],
        "one append each, all six entries"
    );
    // Both acknowledge: the commit index moves once and goes out in one append each.
    let last = c.node(1).last_index();
    for from in [2, 3] {
        c.node(1).step(msg(
            from,
            1,
            1,
            MessageBody::AppendAccepted { match_index: last },
        ));
    }
    assert_eq!(c.node(1).commit_index(), last);
    let notices: Vec<(NodeId, u64)> = drive(c.node(1))
        .into_iter()
        .filter_map(|m| match m.body {
            MessageBody::Append { commit, .. } => Some((m.to, commit)),
            _ => None,
        })
        .collect();
    assert_eq!(notices, vec![(2, last), (3, last)]);
}

#[test]
fn a_probing_leader_sends_one_append_at_a_time() {
    let mut c = Cluster::new(3);
    c.elect(1);
    c.node(1)
        .progress
        .get_mut(&2)
        .expect("follower")
        .become_probe();
    let mut sent = 0;
    for k in 0..5u8 {
        c.node(1).propose(vec![k]).unwrap();
        sent += drive(c.node(1))
            .iter()
            .filter(|m| m.to == 2 && matches!(m.body, MessageBody::Append { .. }))
            .count();
    }
    assert_eq!(sent, 1);
}

#[test]
fn a_partitioned_follower_catches_up_after_healing() {
    let mut c = Cluster::new(3);
    c.elect(1);
    c.isolate(3);
    for k in 0..30u8 {
        c.node(1).propose(vec![k]).unwrap();
    }
    c.stabilize();
    assert_eq!(c.node(1).commit_index(), 31);
    assert_eq!(c.node(3).last_index(), 1);
    c.heal();
    c.tick(1, 2);
    assert_eq!(c.node(3).commit_index(), 31);
    assert_eq!(c.node(3).applied_index(), 31);
}

// --- ReadIndex ----------------------------------------------------------------------------

#[test]
fn read_index_on_the_leader_waits_for_a_heartbeat_quorum() {
    let mut c = Cluster::new(3);
    c.elect(1);
    c.node(1).read_index(7).unwrap();
    let out = c.node(1).take_messages();
    assert!(out.iter().all(|m| m.body
        == MessageBody::Heartbeat {
            commit: 1,
            seq: 1,
            clock: 0
        }));
    assert_eq!(out.len(), 2);
    assert!(c.node(1).take_read_states().is_empty());
    c.node(1)
        .step(msg(2, 1, 1, MessageBody::HeartbeatResponse { seq: 1 }));
    assert_eq!(
        c.node(1).take_read_states(),
        vec![ReadState { ctx: 7, index: 1 }]
    );
}

#[test]
fn read_index_is_never_answered_by_a_leader_cut_off_from_the_quorum() {
    let mut c = Cluster::new(3);
    c.elect(1);
    c.isolate(1);
    c.node(1).read_index(7).unwrap();
    c.tick(1, 30);
    assert!(c.node(1).take_read_states().is_empty());
}

#[test]
fn read_index_on_a_follower_is_forwarded_and_answered() {
    let mut c = Cluster::new(3);
    c.elect(1);
    c.node(1).propose(b"x".to_vec()).unwrap();
    c.stabilize();
    c.node(3).read_index(9).unwrap();
    assert_eq!(
        c.node(3).take_messages(),
        vec![msg(3, 1, 1, MessageBody::ReadIndex { ctx: 9 })]
    );
    c.node(1)
        .step(msg(3, 1, 1, MessageBody::ReadIndex { ctx: 9 }));
    c.stabilize();
    assert_eq!(
        c.node(3).take_read_states(),
        vec![ReadState { ctx: 9, index: 2 }]
    );
    // Without a known leader there is nobody to ask.
    let mut lone = Raft::new(2, vec![1, 2, 3], InitialState::default(), &config());
    assert_eq!(lone.read_index(1), Err(ProposeError::NoLeader));
}

#[test]
fn a_new_leader_answers_reads_only_after_its_noop_commits() {
    let mut c = Cluster::new(3);
    let only_votes = |m: &Message| {
        !matches!(
            m.body,
            MessageBody::Append { .. } | MessageBody::AppendAccepted { .. }
        )
    };
    c.node(1).campaign(Campaign::PreVote);
    c.stabilize_with(only_votes);
    assert_eq!(c.node(1).role(), Role::Leader);
    c.node(1).read_index(3).unwrap();
    c.stabilize_with(only_votes);
    assert!(c.node(1).take_read_states().is_empty());
    c.tick(1, 1);
    assert_eq!(
        c.node(1).take_read_states(),
        vec![ReadState { ctx: 3, index: 1 }]
    );
}

// --- leadership transfer ------------------------------------------------------------------

#[test]
fn leadership_transfer_catches_the_target_up_and_hands_over() {
    let mut c = Cluster::new(3);
    c.elect(1);
    c.isolate(3);
    c.node(1).propose(b"x".to_vec()).unwrap();
    c.stabilize();
    c.heal();
    c.node(1).transfer_leader(3).unwrap();
    assert_eq!(
        c.node(1).propose(b"y".to_vec()),
        Err(ProposeError::TransferInProgress)
    );
    c.stabilize();
    assert_eq!((c.node(3).role(), c.node(3).term()), (Role::Leader, 2));
    assert_eq!(
        (c.node(1).role(), c.node(1).leader()),
        (Role::Follower, Some(3))
    );
    // Sent again with each acknowledgement once the target is caught up (one may be lost);
    // a late one finds the target in a newer term and is ignored.
    assert!(c
        .delivered
        .iter()
        .filter(|m| m.body == MessageBody::TimeoutNow)
        .all(|m| (m.from, m.to, m.term) == (1, 3, 1)));
    assert!(
        !c.delivered
            .iter()
            .any(|m| m.from == 3 && matches!(m.body, MessageBody::PreVote { .. })),
        "the target skips pre-vote"
    );
}

#[test]
fn a_transfer_that_does_not_finish_is_abandoned_after_an_election_timeout() {
    let mut c = Cluster::new(3);
    c.elect(1);
    c.isolate(3);
    c.node(1).transfer_leader(3).unwrap();
    assert_eq!(
        c.node(1).transfer_leader(9),
        Err(ProposeError::UnknownMember(9))
    );
    c.tick(1, 10);
    assert_eq!(c.node(1).lead_transferee(), None);
    assert!(c.node(1).propose(b"y".to_vec()).is_ok());
}

// --- input from peers is never trusted ----------------------------------------------------

#[test]
fn malformed_and_stale_messages_are_ignored_or_answered() {
    let mut c = Cluster::new(3);
    c.elect(1);
    let f = c.node(2);
    let before = (f.term(), f.last_index(), f.commit_index());
    // Entries that skip an index, that go back in term, that pass the sender's term.
    for entries in [
        vec![Entry {
            term: 1,
            index: 3,
            payload: Payload::Empty,
        }],
        vec![Entry {
            term: 0,
            index: 2,
            payload: Payload::Empty,
        }],
        vec![Entry {
            term: 5,
            index: 2,
            payload: Payload::Empty,
        }],
    ] {
        f.step(msg(
            1,
            2,
            1,
            MessageBody::Append {
                prev_index: 1,
                prev_term: 1,
                entries,
                commit: u64::MAX,
                clock: 0,
            },
        ));
    }
    assert!(drive(f).is_empty());
    assert_eq!((f.term(), f.last_index(), f.commit_index()), before);
    // Indexes far beyond the log, from the leader.
    f.step(msg(
        1,
        2,
        1,
        MessageBody::Append {
            prev_index: u64::MAX,
            prev_term: 1,
            entries: Vec::new(),
            commit: u64::MAX,
            clock: 0,
        },
    ));
    f.step(msg(
        1,
        2,
        1,
        MessageBody::Heartbeat {
            commit: u64::MAX,
            seq: u64::MAX,
            clock: u64::MAX,
        },
    ));
    drive(f);
    assert_eq!(f.commit_index(), 1, "a commit index is capped at our log");
    // Unknown sender, wrong receiver, ourselves.
    for m in [
        msg(9, 2, 9, MessageBody::TimeoutNow),
        msg(1, 3, 9, MessageBody::TimeoutNow),
        msg(2, 2, 9, MessageBody::TimeoutNow),
    ] {
        f.step(m);
    }
    assert_eq!(f.term(), 1);
    // A stale leader is told the newer term.
    f.step(msg(
        3,
        2,
        0,
        MessageBody::Heartbeat {
            commit: 0,
            seq: 4,
            clock: 0,
        },
    ));
    assert_eq!(
        f.take_messages(),
        vec![msg(2, 3, 1, MessageBody::HeartbeatResponse { seq: 4 })]
    );
    // The leader ignores acknowledgements beyond its log and responses from nowhere.
    let l = c.node(1);
    l.step(msg(
        2,
        1,
        1,
        MessageBody::AppendAccepted {
            match_index: u64::MAX,
        },
    ));
    l.step(msg(
        2,
        1,
        1,
        MessageBody::AppendRejected {
            rejected_index: u64::MAX,
            hint_index: u64::MAX,
            hint_term: u64::MAX,
        },
    ));
    l.step(msg(
        2,
        1,
        1,
        MessageBody::HeartbeatResponse { seq: u64::MAX },
    ));
    drive(l);
    assert_eq!((l.role(), l.commit_index()), (Role::Leader, 1));
    assert!(l.violation().is_none());
}

#[test]
fn messages_round_trip_through_bincode_and_garbage_never_panics() {
    let cfg = bincode::config::standard().with_limit::<{ 1 << 20 }>();
    let m = msg(
        1,
        2,
        3,
        MessageBody::Append {
            prev_index: 4,
            prev_term: 2,
            entries: entries_of_terms(&[1, 2]),
            commit: 1,
            clock: 0,
        },
    );
    let bytes = bincode::encode_to_vec(&m, cfg).unwrap();
    let (back, _): (Message, usize) = bincode::decode_from_slice(&bytes, cfg).unwrap();
    assert_eq!(back, m);
    let mut prng = Prng::new(3);
    for _ in 0..2000 {
        let len = prng.below(64) as usize;
        let junk: Vec<u8> = (0..len).map(|_| prng.next_u64() as u8).collect();
        if let Ok((m, _)) = bincode::decode_from_slice::<Message, _>(&junk, cfg) {
            // Whatever decodes is just another untrusted message.
            let mut raft = Raft::new(2, vec![1, 2, 3], InitialState::default(), &config());
            raft.step(m);
            drive(&mut raft);
        }
    }
}

#[test]
fn a_restarted_member_resumes_its_log_and_hard_state() {
    let mut initial = restarted(&[1, 1, 2], 2, 2);
    initial.hard_state.vote = 3;
    let raft = Raft::new(1, vec![1, 2, 3], initial, &config());
    assert_eq!((raft.term(), raft.hard_state().vote), (2, 3));
    assert_eq!((raft.last_index(), raft.commit_index()), (3, 2));
    assert_eq!(raft.role(), Role::Follower);
}

#[test]
fn a_hostile_term_saturates_instead_of_overflowing() {
    let mut raft = Raft::new(2, vec![1, 2, 3], InitialState::default(), &config());
    raft.step(msg(
        1,
        2,
        u64::MAX,
        MessageBody::Heartbeat {
            commit: 0,
            seq: 0,
            clock: 0,
        },
    ));
    assert_eq!(raft.term(), u64::MAX);
    raft.step(msg(
        3,
        2,
        u64::MAX,
        MessageBody::PreVoteResponse { granted: true },
    ));
    for _ in 0..100 {
        raft.tick();
    }
    drive(&mut raft);
    assert!(raft.violation().is_none());
}

// Every field a peer controls, drawn from values that break careless arithmetic, into a
// member in each role; debug builds panic on overflow, so this finds any unchecked sum.
#[test]
fn random_messages_never_panic_or_break_invariants() {
    let mut prng = Prng::new(11);
    let num = |prng: &mut Prng| match prng.below(6) {
        0 => 0,
        1 => 1,
        2 => prng.below(8),
        3 => u64::MAX,
        4 => u64::MAX - prng.below(3),
        _ => prng.next_u64(),
    };
    for round in 0..1000 {
        let mut c = Cluster::new(3);
        c.elect(1);
        c.node(1).propose(b"x".to_vec()).unwrap();
        c.stabilize();
        c.node(3).campaign(Campaign::PreVote);
        for _ in 0..40 {
            let to = prng.between(1, 3);
            let from = [1, 2, 3, 4][prng.below(4) as usize];
            let entries = (0..prng.below(3))
                .map(|_| Entry {
                    term: num(&mut prng),
                    index: num(&mut prng),
                    payload: Payload::Empty,
                })
                .collect();
            let body = match prng.below(12) {
                0 => MessageBody::PreVote {
                    last_index: num(&mut prng),
                    last_term: num(&mut prng),
                },
                1 => MessageBody::PreVoteResponse {
                    granted: prng.chance(1, 2),
                },
                2 => MessageBody::Vote {
                    last_index: num(&mut prng),
                    last_term: num(&mut prng),
                    transfer: prng.chance(1, 2),
                },
                3 => MessageBody::VoteResponse {
                    clock: num(&mut prng),
                    granted: prng.chance(1, 2),
                },
                4 => MessageBody::Append {
                    prev_index: num(&mut prng),
                    prev_term: num(&mut prng),
                    entries,
                    commit: num(&mut prng),
                    clock: 0,
                },
                5 => MessageBody::AppendAccepted {
                    match_index: num(&mut prng),
                },
                6 => MessageBody::AppendRejected {
                    rejected_index: num(&mut prng),
                    hint_index: num(&mut prng),
                    hint_term: num(&mut prng),
                },
                7 => MessageBody::Heartbeat {
                    commit: num(&mut prng),
                    seq: num(&mut prng),
                    clock: num(&mut prng),
                },
                8 => MessageBody::HeartbeatResponse {
                    seq: num(&mut prng),
                },
                9 => MessageBody::ReadIndex {
                    ctx: num(&mut prng),
                },
                10 => MessageBody::ReadIndexResponse {
                    ctx: num(&mut prng),
                    index: num(&mut prng),
                },
                _ => MessageBody::TimeoutNow,
            };
            // Mostly the current term, so the message gets past the term checks.
            let term = if prng.chance(2, 3) {
                c.node(to).term().saturating_add(prng.below(2))
            } else {
                num(&mut prng)
            };
            c.node(to).step(msg(from, to, term, body));
            if prng.chance(1, 4) {
                c.node(to).tick();
            }
            drive(c.node(to));
            assert_eq!(c.node(to).violation(), None, "round {round}");
        }
    }
}

#[test]
fn a_hastened_first_election_comes_within_one_election_timeout() {
    let cfg = config();
    for seed in 0..50 {
        let mut r = Raft::new(
            1,
            vec![1, 2, 3],
            InitialState::default(),
            &Config {
                seed,
                ..cfg.clone()
            },
        );
        r.hasten_first_election();
        let mut ticks = 0;
        while !drive(&mut r)
            .iter()
            .any(|m| matches!(m.body, MessageBody::PreVote { .. }))
        {
            r.tick();
            ticks += 1;
            assert!(
                ticks <= cfg.election_ticks + 1,
                "seed {seed}: no campaign after {ticks} ticks"
            );
        }
        assert!(ticks >= 1, "seed {seed}: still one tick at least");
    }
}

// --- membership changes (thesis §4.1): one voter at a time, in effect once appended -------

/// A 3-member cluster led by 1, with member 4 started empty (knowing the first
/// configuration, as every original member does) but not yet a voter.
fn cluster_with_newcomer() -> Cluster {
    let mut c = Cluster::new(3);
    c.elect(1);
    c.nodes.insert(
        4,
        Raft::new(4, vec![1, 2, 3], InitialState::default(), &config()),
    );
    c
}

#[test]
fn an_added_voter_counts_from_the_moment_the_leader_appends_it_and_catches_up() {
    let mut c = cluster_with_newcomer();
    let index = c
        .node(1)
        .propose_conf_change(ConfChange::AddVoter(4), b"d".to_vec())
        .expect("leader with its noop committed takes a change");
    // In effect on the leader before it commits: 4 is replicated to and counted.
    assert_eq!(c.node(1).voters(), [1, 2, 3, 4]);
    assert_eq!(c.node(2).voters(), [1, 2, 3], "not appended on 2 yet");
    c.stabilize();
    for id in 1..=4 {
        assert_eq!(c.node(id).voters(), [1, 2, 3, 4], "member {id}");
        assert!(c.node(id).commit_index() >= index, "member {id}");
    }
    assert_eq!(c.node(4).last_index(), c.node(1).last_index());
    // A majority of 4 is 3: with two followers cut off, nothing commits.
    c.isolate(3);
    c.isolate(4);
    let w = c.node(1).propose(b"w".to_vec()).unwrap();
    c.stabilize();
    assert!(c.node(1).commit_index() < w, "2 of 4 is no majority");
    c.heal();
    c.tick(1, 1);
    assert!(c.node(1).commit_index() >= w);
}

#[test]
fn a_follower_asks_the_leader_for_a_change_and_a_refused_one_is_dropped() {
    let mut c = cluster_with_newcomer();
    c.node(2)
        .request_conf_change(ConfChange::AddVoter(4), b"d".to_vec())
        .expect("a follower with a leader forwards the change");
    c.stabilize();
    for id in 1..=4 {
        assert_eq!(c.node(id).voters(), [1, 2, 3, 4], "member {id}");
    }
    let appended = c
        .node(1)
        .log_entries()
        .iter()
        .any(|e| e.payload.membership() == Some((ConfChange::AddVoter(4), b"d".as_slice())));
    assert!(appended, "the leader appended the change with its context");
    // The same change again: the leader refuses it and nothing is appended.
    let last = c.node(1).last_index();
    c.node(3)
        .request_conf_change(ConfChange::AddVoter(4), vec![])
        .unwrap();
    c.stabilize();
    assert_eq!(c.node(1).last_index(), last);
    // A member that is not (or no longer) a voter cannot have changes made.
    let term = c.node(1).term();
    c.node(1).step(msg(
        9,
        1,
        term,
        MessageBody::ProposeMembership {
            change: ConfChange::RemoveVoter(2),
            context: vec![],
        },
    ));
    assert_eq!(c.node(1).last_index(), last);
    assert_eq!(c.node(1).voters(), [1, 2, 3, 4]);
    // A member that knows no leader, of an older term (restarted at an address the
    // leader cannot reach yet), asks every voter, and the leader takes the change.
    let mut lost = Raft::new(4, vec![1, 2, 3, 4], InitialState::default(), &config());
    lost.request_conf_change(ConfChange::UpdateMember(4), b"moved".to_vec())
        .unwrap();
    let asked: Vec<Message> = lost.take_messages();
    assert_eq!(
        asked.iter().map(|m| m.to).collect::<Vec<_>>(),
        [1, 2, 3],
        "{asked:?}"
    );
    assert!(asked.iter().all(|m| m.term < c.nodes[&1].term()));
    for m in asked {
        c.node(m.to).step(m);
    }
    assert_eq!(c.node(1).last_index(), last + 1);
    assert_eq!(c.node(2).last_index(), last, "only the leader acts on it");
}

#[test]
fn membership_changes_go_one_at_a_time_and_only_after_the_leaders_first_commit() {
    let mut c = cluster_with_newcomer();
    c.node(1)
        .propose_conf_change(ConfChange::AddVoter(4), vec![])
        .unwrap();
    assert!(c.node(1).membership_change_pending());
    assert_eq!(
        c.node(1)
            .propose_conf_change(ConfChange::RemoveVoter(2), vec![]),
        Err(ProposeError::MembershipChangePending)
    );
    c.stabilize();
    assert!(!c.node(1).membership_change_pending());
    assert_eq!(
        c.node(1)
            .propose_conf_change(ConfChange::AddVoter(4), vec![]),
        Err(ProposeError::MemberExists(4))
    );
    assert_eq!(
        c.node(1)
            .propose_conf_change(ConfChange::RemoveVoter(9), vec![]),
        Err(ProposeError::UnknownMember(9))
    );
    assert_eq!(
        c.node(2)
            .propose_conf_change(ConfChange::RemoveVoter(3), vec![]),
        Err(ProposeError::NotLeader)
    );
    // A new leader whose noop has not committed yet takes no change.
    c.isolate(1);
    c.node(2).campaign(Campaign::Transfer);
    c.stabilize_with(|m| !matches!(m.body, MessageBody::AppendAccepted { .. }));
    assert_eq!(c.node(2).role(), Role::Leader);
    assert_eq!(
        c.node(2)
            .propose_conf_change(ConfChange::RemoveVoter(1), vec![]),
        Err(ProposeError::MembershipChangePending)
    );
    // The lost acknowledgements come again after the next heartbeat.
    c.tick(2, 1);
    assert_eq!(
        c.node(2)
            .propose_conf_change(ConfChange::RemoveVoter(1), vec![])
            .map(|_| ()),
        Ok(())
    );
}

#[test]
fn a_removed_follower_is_left_alone_and_never_campaigns() {
    let mut c = Cluster::new(3);
    c.elect(1);
    let removal = c
        .node(1)
        .propose_conf_change(ConfChange::RemoveVoter(3), vec![])
        .unwrap();
    c.stabilize();
    assert!(
        c.node(3).commit_index() >= removal,
        "3 learns that its removal committed (its driver stops it then)"
    );
    assert_eq!(c.node(1).voters(), [1, 2]);
    assert_eq!(c.node(3).voters(), [1, 2], "3 appended its own removal");
    assert_eq!(
        c.node(1).follower_matches().len(),
        1,
        "only 2 is replicated to"
    );
    // Two voters: both are needed, 3 no longer is.
    c.isolate(3);
    let w = c.node(1).propose(b"w".to_vec()).unwrap();
    c.stabilize();
    assert_eq!(c.node(1).commit_index(), w);
    // However long 3 waits, it does not campaign: nobody hears from it.
    c.delivered.clear();
    c.heal();
    c.isolate(1);
    c.isolate(2);
    c.tick(3, 40);
    assert_eq!(c.node(3).role(), Role::Follower);
    assert!(c.delivered.is_empty());
}

#[test]
fn a_leader_that_removes_itself_leads_until_the_removal_commits_then_hands_over() {
    let mut c = Cluster::new(3);
    c.elect(1);
    let term = c.node(1).term();
    let index = c
        .node(1)
        .propose_conf_change(ConfChange::RemoveVoter(1), vec![])
        .unwrap();
    assert_eq!(
        c.node(1).role(),
        Role::Leader,
        "leads while the removal commits"
    );
    assert_eq!(c.node(1).voters(), [2, 3]);
    // No tick: the handover (TimeoutNow) elects the next leader at once.
    c.stabilize();
    assert_eq!(c.node(1).role(), Role::Follower);
    let leaders: Vec<NodeId> = [2, 3]
        .into_iter()
        .filter(|id| c.nodes[id].role() == Role::Leader)
        .collect();
    assert_eq!(leaders.len(), 1, "one of the remaining voters leads");
    let l = leaders[0];
    assert_eq!(c.node(l).term(), term + 1);
    assert!(c.node(l).commit_index() > index);
    // The old leader keeps its log in step as a follower but never campaigns.
    c.tick(1, 40);
    assert_eq!(c.node(1).role(), Role::Follower);
    assert_eq!(c.node(l).role(), Role::Leader);
}

#[test]
fn an_uncommitted_change_overwritten_by_a_new_leader_is_undone() {
    let mut c = cluster_with_newcomer();
    c.isolate(1);
    c.node(1)
        .propose_conf_change(ConfChange::AddVoter(4), vec![])
        .unwrap();
    c.stabilize();
    assert_eq!(c.node(1).voters(), [1, 2, 3, 4]);
    c.node(2).campaign(Campaign::Transfer);
    c.stabilize();
    assert_eq!(c.node(2).role(), Role::Leader);
    c.heal();
    c.tick(2, 1);
    assert_eq!(c.node(1).role(), Role::Follower);
    assert_eq!(
        c.node(1).voters(),
        [1, 2, 3],
        "the change went with the entry"
    );
    assert_eq!(c.node(1).last_index(), c.node(2).last_index());
}

#[test]
fn a_restart_takes_the_voters_at_applied_and_the_changes_after_it() {
    let change = |index, change| Entry {
        term: 1,
        index,
        payload: Payload::Membership {
            change,
            context: vec![],
        },
    };
    let initial = InitialState {
        hard_state: HardState {
            term: 1,
            vote: 0,
            commit: 2,
        },
        applied: 1,
        compacted_index: 0,
        compacted_term: 0,
        entries: vec![
            // Already in the voters the driver passes (applied at 1).
            change(1, ConfChange::AddVoter(4)),
            change(2, ConfChange::RemoveVoter(2)),
        ],
    };
    let raft = Raft::new(1, vec![1, 2, 3, 4], initial, &config());
    assert_eq!(raft.voters(), [1, 3, 4]);
    assert_eq!(raft.violation(), None);
}

#[test]
fn a_non_voters_campaign_is_refused_within_the_lease_and_answered_after_it() {
    let mut c = Cluster::new(3);
    c.elect(1);
    let term = c.node(2).term();
    let last = c.node(2).last_index();
    let stranger = |term| {
        msg(
            9,
            2,
            term,
            MessageBody::Vote {
                last_index: last,
                last_term: term - 1,
                transfer: false,
            },
        )
    };
    c.node(2).step(stranger(term + 1));
    assert_eq!(
        c.node(2).term(),
        term,
        "a leader is alive: the term is not taken"
    );
    assert!(drive(c.node(2)).is_empty());
    // Without a leader for an election timeout, member 9 (a voter this member has not
    // learned of yet, say) gets its vote like anyone.
    c.node(2).election_elapsed = config().election_ticks;
    c.node(2).step(stranger(term + 1));
    let out = drive(c.node(2));
    assert!(
        out.iter().any(|m| m.to == 9
            && matches!(m.body, MessageBody::VoteResponse { granted: true, .. })),
        "{out:?}"
    );
}

// --- snapshots (§7): the state instead of a log that was compacted or says too little ------

/// Hands every snapshot a leader asked for to its follower at once, as a driver whose
/// transfer succeeded; returns how many went.
fn deliver_snapshots(c: &mut Cluster) -> usize {
    let mut sent = 0;
    let leaders: Vec<NodeId> = c.nodes.keys().copied().collect();
    for l in leaders {
        let requests = c.node(l).take_snapshot_requests();
        for to in requests {
            let meta = c
                .node(l)
                .snapshot_meta()
                .expect("leader has its applied entry");
            let term = c.node(l).term();
            let index = meta.index;
            assert!(c.node(to).restore(l, term, meta));
            c.node(l).snapshot_sent(to, Ok(index));
            sent += 1;
        }
    }
    c.stabilize();
    sent
}

#[test]
fn a_follower_behind_the_compacted_log_gets_a_snapshot_and_catches_up() {
    let mut c = Cluster::new(3);
    c.elect(1);
    c.isolate(3);
    for k in 0..5u8 {
        c.node(1).propose(vec![k]).unwrap();
    }
    c.stabilize();
    let applied = c.node(1).applied_index();
    c.node(1).compact(applied);
    c.heal();
    c.tick(1, 1);
    assert_eq!(deliver_snapshots(&mut c), 1);
    c.node(1).propose(b"after".to_vec()).unwrap();
    c.stabilize();
    let (last, commit) = (c.node(1).last_index(), c.node(1).commit_index());
    assert_eq!(c.node(3).last_index(), last);
    assert_eq!(c.node(3).commit_index(), commit);
    assert_eq!(
        c.node(3).first_index(),
        applied + 1,
        "3's log starts after the snapshot"
    );
    assert_eq!(c.node(3).violation(), None);
}

#[test]
fn a_member_that_joined_empty_asks_for_the_state_and_learns_the_voters_from_it() {
    let mut c = Cluster::new(3);
    c.elect(1);
    // No configuration at all: it knows nothing of the cluster but its own id.
    c.nodes
        .insert(4, Raft::new(4, vec![], InitialState::default(), &config()));
    c.node(1)
        .propose_conf_change(ConfChange::AddVoter(4), vec![])
        .unwrap();
    c.stabilize();
    assert_eq!(
        c.node(4).last_index(),
        0,
        "it took no log it could not interpret"
    );
    assert!(c
        .delivered
        .iter()
        .any(|m| m.body == MessageBody::SnapshotWanted));
    assert_eq!(deliver_snapshots(&mut c), 1);
    c.tick(1, 1);
    assert_eq!(c.node(4).voters(), [1, 2, 3, 4]);
    assert_eq!(c.node(4).last_index(), c.node(1).last_index());
    assert_eq!(c.node(4).commit_index(), c.node(1).commit_index());
}

#[test]
fn a_stale_snapshot_is_refused_and_a_failed_transfer_is_asked_for_again() {
    let mut c = Cluster::new(3);
    c.elect(1);
    c.node(1).propose(b"x".to_vec()).unwrap();
    c.stabilize();
    let meta = c.node(1).snapshot_meta().unwrap();
    let term = c.node(1).term();
    // 2 has everything the snapshot covers already; an older term's is refused outright.
    assert!(!c.node(2).restore(1, term, meta.clone()));
    assert!(!c.node(2).restore(1, term - 1, meta));
    // A failed transfer: the leader asks again once the follower answers again.
    c.isolate(3);
    c.node(1).propose(b"y".to_vec()).unwrap();
    c.stabilize();
    let applied = c.node(1).applied_index();
    c.node(1).compact(applied);
    c.heal();
    c.tick(1, 1);
    assert_eq!(c.node(1).take_snapshot_requests(), vec![3]);
    c.node(1).snapshot_sent(3, Err(()));
    c.tick(1, 1);
    assert_eq!(c.node(1).take_snapshot_requests(), vec![3]);
}

#[test]
fn a_snapshot_keeps_the_durable_entries_after_its_last_one_when_the_log_holds_it() {
    let mut c = Cluster::new(3);
    c.elect(1);
    c.node(1).propose(b"a".to_vec()).unwrap();
    c.stabilize();
    let meta = c.node(1).snapshot_meta().unwrap();
    let term = c.node(1).term();
    // 2 holds (and acknowledged) more than the snapshot covers, but has not learned the
    // commit of it: the snapshot must not take those entries away.
    c.isolate(3);
    c.node(1).propose(b"b".to_vec()).unwrap();
    c.stabilize_with(|m| !matches!(m.body, MessageBody::Heartbeat { .. }));
    let f = c.node(2);
    let last = f.last_index();
    assert!(last > meta.index);
    f.hard_state.commit = meta.index - 1;
    f.applying = f.applying.min(meta.index - 1);
    f.applied = f.applied.min(meta.index - 1);
    assert!(f.restore(1, term, meta.clone()));
    assert_eq!(f.last_index(), last, "kept what follows the snapshot");
    assert_eq!(f.first_index(), meta.index + 1);
    assert_eq!(f.violation(), None);
}
