//! What the listener's TLS session keeps on the heap at rest (issue 11:
//! what a TLS connection costs at rest). Counted by a global allocator over
//! sessions handshaken in memory against rustls clients, after one request
//! and one answer each, the clients dropped; malloc's own count
//! (`mallinfo2`) is printed beside it, as it also sees aws-lc's C
//! allocations (the AES-GCM key contexts) and chunk headers.
//!
//! The buffered `rustls::ServerConnection` the listener used before kept
//! 6.4 KiB here, 4 KiB of it its receive buffer; `ServerSession` (rustls'
//! unbuffered API, buffers that exist only while bytes are in flight)
//! keeps the rustls state alone (docs/tls.md, "Measured at rest").

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::Path;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Arc;

use common::Certs;
use rustls::ClientConnection;
use switchboard::tls::ServerSession;

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded unchanged.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded unchanged.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded unchanged.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new as isize - layout.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded unchanged.
        unsafe { System.realloc(ptr, layout, new) }
    }
}

#[global_allocator]
static A: Counting = Counting;

/// Bytes glibc's malloc has handed out and not had back (`mallinfo2`):
/// the Rust heap (the system allocator is malloc) and C libraries' alike.
fn malloc_in_use() -> isize {
    // SAFETY: mallinfo2 only reads the allocator's statistics.
    unsafe { libc::mallinfo2() }.uordblks as isize
}

/// Moves records both ways until neither side has anything to say.
fn pump(server: &mut ServerSession, client: &mut ClientConnection) {
    for _ in 0..32 {
        let mut to_server = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut to_server).unwrap();
        }
        server.handle_ciphertext(&to_server).unwrap();
        let mut sink = [0u8; 4096];
        while let Ok(n) = server.read_plaintext(&mut sink) {
            if n == 0 {
                break;
            }
        }
        let to_client = server.take_outgoing();
        if to_server.is_empty() && to_client.is_empty() {
            return;
        }
        let mut rd = &to_client[..];
        while !rd.is_empty() {
            client.read_tls(&mut rd).unwrap();
            client.process_new_packets().unwrap();
        }
        while let Ok(n) = std::io::Read::read(&mut client.reader(), &mut sink) {
            if n == 0 {
                break;
            }
        }
    }
    panic!("the handshake did not settle");
}

/// One server session, handshaken, one request in and one answer out.
fn session(
    server_config: &Arc<rustls::ServerConfig>,
    client_config: &Arc<rustls::ClientConfig>,
) -> Box<ServerSession> {
    let mut server = Box::new(ServerSession::new(Arc::clone(server_config)));
    let mut client =
        ClientConnection::new(Arc::clone(client_config), "localhost".try_into().unwrap()).unwrap();
    pump(&mut server, &mut client);
    assert!(!server.is_handshaking());
    std::io::Write::write_all(&mut client.writer(), &[b'x'; 300]).unwrap();
    pump(&mut server, &mut client);
    let mut wire = Vec::new();
    let answer = [b'y'; 200];
    assert_eq!(
        server
            .write_vectored(&mut wire, &[std::io::IoSlice::new(&answer)])
            .unwrap(),
        200
    );
    let mut rd = &wire[..];
    while !rd.is_empty() {
        client.read_tls(&mut rd).unwrap();
        client.process_new_packets().unwrap();
    }
    pump(&mut server, &mut client);
    assert_eq!(server.buffered(), 0);
    server
}

#[test]
fn a_server_session_at_rest_keeps_little_on_the_heap() {
    let certs = Certs::new("mem");
    let args = certs.args();
    let server_config =
        switchboard::tls::load::server_config(Path::new(&args[1]), Path::new(&args[3])).unwrap();
    let client_config = certs.client_config();
    // Warm-up: lazily built tables, the session cache's first entries.
    let warm: Vec<_> = (0..300)
        .map(|_| session(&server_config, &client_config))
        .collect();
    drop(warm);
    const N: usize = 200;
    let mut kept = Vec::with_capacity(N);
    let before = LIVE.load(Ordering::Relaxed);
    let malloc_before = malloc_in_use();
    for _ in 0..N {
        kept.push(session(&server_config, &client_config));
    }
    let per = (LIVE.load(Ordering::Relaxed) - before) / N as isize;
    let malloc_per = (malloc_in_use() - malloc_before) / N as isize;
    eprintln!(
        "heap per server TLS session at rest: {per} B through Rust's allocator \
         (the session {} B inline, in its Box), {malloc_per} B in malloc's own count \
         (chunk headers and aws-lc's C allocations included)",
        std::mem::size_of::<ServerSession>()
    );
    // Measured 2.4 KiB (rustls 0.23.46, aws-lc-rs, TLS 1.3): the rustls
    // state, keys and traffic secrets. 3 KiB leaves room for a dependency
    // update, not for a buffer kept at rest (4 KiB each).
    assert!(per < 3 * 1024, "{per} B per idle TLS session");
}
