//! The same client as `warm_floor.c`, in Rust with std, built as Rust
//! builds a program by default (dynamically linked to glibc): what any
//! Rust front end of a warm server pays before it does anything else.
//!
//! usage: warm_client SOCKET        (bench/floors.sh builds it with rustc)

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: warm_client SOCKET");
        return ExitCode::from(2);
    };
    let mut status = [0u8; 4];
    let answered = UnixStream::connect(path)
        .and_then(|mut s| s.write_all(&[0]).and_then(|()| s.read_exact(&mut status)));
    match answered {
        // A wait status: exited with 0 is all zero bytes.
        Ok(()) if status == [0; 4] => ExitCode::SUCCESS,
        Ok(()) => ExitCode::from(101),
        Err(e) => {
            eprintln!("warm_client: {e}");
            ExitCode::from(100)
        }
    }
}
