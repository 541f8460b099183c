//! A minimal HTTP/1.1 server for the VM runs (cross/vm.sh): it reads each
//! request on the descriptor it accepted and answers on the same one, as most servers do
//! (busybox httpd answers on a duplicate, descriptor 1, which telegen does not follow).
//! Usage: httpd PORT
use std::io::{Read, Write};
use std::net::TcpListener;

fn main() {
    let port = std::env::args().nth(1).expect("usage: httpd PORT");
    let listener = TcpListener::bind(format!("127.0.0.1:{port}")).expect("bind");
    for conn in listener.incoming() {
        let Ok(mut conn) = conn else { continue };
        let mut req = Vec::new();
        let mut buf = [0u8; 1024];
        while !req.windows(4).any(|w| w == b"\r\n\r\n") {
            match conn.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => req.extend_from_slice(&buf[..n]),
            }
        }
        let _ = conn.write_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 6\r\nConnection: close\r\n\r\nhello\n",
        );
    }
}
