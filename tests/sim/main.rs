//! Deterministic cluster simulation of the Raft core (design.md, Tests §2). This first part
//! is the linearizability checker the simulator's client histories go through.

mod linearizability;
