//! `pikv ctl`: etcdctl's v2 client inside pikv (issue 8). This first piece is the HTTP
//! layer over `ureq`; the commands follow.

pub mod http;
