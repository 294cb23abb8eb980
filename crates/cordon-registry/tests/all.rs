//! The registry driven through its library type against real files.

mod suite;
