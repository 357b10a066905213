//! Small dependency-free helpers shared by the API and the stats endpoints.

pub mod time;
