//! cordon-egress's integration tests, built as one binary: the real proxy,
//! real clients (curl, python3) and servers the tests start on 127.0.0.1.

mod suite;
