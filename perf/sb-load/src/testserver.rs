//! A tiny in-process channel server for end-to-end tests of the generator:
//! the protocol subset the peers speak (welcome, join_channel → joined,
//! user_action to every member, sender included), one thread per connection,
//! and a fault knob to prove the generator notices loss and duplication.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;

use crate::ws;

/// What the server does wrong, on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    None,
    /// Never deliver message number 3 of any publisher to the first member.
    DropOne,
    /// Deliver message number 3 of every publisher twice to every member.
    DuplicateOne,
}

type Members = Arc<Mutex<HashMap<String, Vec<Arc<Mutex<TcpStream>>>>>>;

/// Starts the server on an ephemeral port and returns its `ws://` URL.
pub fn start(fault: Fault) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}/ws", listener.local_addr().unwrap());
    let members: Members = Arc::default();
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let members = Arc::clone(&members);
            thread::spawn(move || serve(stream, &members, fault));
        }
    });
    url
}

fn serve(mut stream: TcpStream, members: &Members, fault: Fault) {
    stream.set_nodelay(true).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while ws::find(&buf, b"\r\n\r\n").is_none() {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let head_end = ws::find(&buf, b"\r\n\r\n").unwrap() + 4;
    buf.drain(..head_end);
    let answer = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
        ws::ACCEPT
    );
    let me = Arc::new(Mutex::new(stream.try_clone().unwrap()));
    send(&me, answer.as_bytes());
    send(&me, &text(br#"{"type":"welcome","conn":"t-1"}"#));
    loop {
        while let Some((payload, used)) = client_frame(&buf) {
            buf.drain(..used);
            handle(&payload, &me, members, fault);
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn handle(payload: &[u8], me: &Arc<Mutex<TcpStream>>, members: &Members, fault: Fault) {
    let v: serde_json::Value = serde_json::from_slice(payload).unwrap();
    let channel = v["channel"].as_str().unwrap().to_owned();
    match v["type"].as_str() {
        Some("join_channel") => {
            members
                .lock()
                .unwrap()
                .entry(channel.clone())
                .or_default()
                .push(Arc::clone(me));
            send(
                me,
                &text(format!(r#"{{"type":"joined","channel":"{channel}"}}"#).as_bytes()),
            );
        }
        Some("user_action") => {
            let seq = v["action"]["s"].as_u64().unwrap();
            // PROTOCOL.md §4: the action passes through byte for byte.
            let at = ws::find(payload, b"\"action\":").unwrap() + 9;
            let action = std::str::from_utf8(&payload[at..payload.len() - 1]).unwrap();
            let event = format!(
                r#"{{"type":"user_action","channel":"{channel}","user":"u","conn":"c","action":{action}}}"#
            );
            let frame = text(event.as_bytes());
            let list = members
                .lock()
                .unwrap()
                .get(&channel)
                .cloned()
                .unwrap_or_default();
            for (i, m) in list.iter().enumerate() {
                match fault {
                    Fault::DropOne if seq == 3 && i == 0 => {}
                    Fault::DuplicateOne if seq == 3 => {
                        send(m, &frame);
                        send(m, &frame);
                    }
                    _ => send(m, &frame),
                }
            }
        }
        _ => {}
    }
}

fn send(to: &Arc<Mutex<TcpStream>>, bytes: &[u8]) {
    let _ = to.lock().unwrap().write_all(bytes);
}

/// An unmasked server text frame.
fn text(payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x81];
    if payload.len() < 126 {
        f.push(payload.len() as u8);
    } else {
        f.push(126);
        f.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    }
    f.extend_from_slice(payload);
    f
}

/// One masked client frame from the front of `buf`: (unmasked payload, bytes used).
fn client_frame(buf: &[u8]) -> Option<(Vec<u8>, usize)> {
    let b1 = *buf.get(1)?;
    assert_eq!(b1 & 0x80, 0x80, "client frames must be masked");
    let (len, at) = match b1 & 0x7F {
        126 => (u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?]) as usize, 4),
        127 => unreachable!("the generator sends small frames"),
        n => (n as usize, 2),
    };
    let mask = buf.get(at..at + 4)?;
    let body = buf.get(at + 4..at + 4 + len)?;
    let payload = body
        .iter()
        .enumerate()
        .map(|(i, b)| b ^ mask[i % 4])
        .collect();
    Some((payload, at + 4 + len))
}
