//! sb-floor: the CPU floor under a WebSocket server's cost per delivery.
//!
//! A server that delivers one small frame to one connection pays at least one
//! `write(2)` into a TCP socket; on loopback that call also runs the
//! receiver's TCP input path in the sender's context, and all of it is
//! charged to the writing thread. This probe measures that cost on the
//! machine at hand, so benchmark tables can quote a server's CPU per delivery
//! as a multiple of it.
//!
//! Setup: `--conns` loopback connections; this thread writes to the accepted
//! ends, round-robin, one `write` of `k` frames of `--frame-bytes` each per
//! connection per round; a reader thread drains the other ends with epoll.
//! Only the writer's CPU is counted (getrusage(2) `RUSAGE_THREAD`), over
//! `--seconds` per `k` cut into `--slices`, after one unmeasured round; the
//! median slice is the figure.
//!
//! Prints µs per write and µs per message for each k; `--json` adds one line.

use std::io::{self, IoSlice, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};

struct Args {
    conns: usize,
    frame_bytes: usize,
    seconds: f64,
    ks: Vec<usize>,
    slices: usize,
    writev: bool,
    json: bool,
}

const USAGE: &str =
    "usage: sb-floor [--conns N (1000)] [--frame-bytes B (100)] [--seconds S per k (1.0)]
                [--slices N (5)] [--k 1,2,4,8,16,32,64] [--writev] [--json]
  each k is measured in N slices; the median slice is reported
  --writev  send k frames as k iovecs of one writev(2) instead of one contiguous buffer";

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        conns: 1000,
        frame_bytes: 100,
        seconds: 1.0,
        ks: vec![1, 2, 4, 8, 16, 32, 64],
        slices: 5,
        writev: false,
        json: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--conns" => a.conns = value()?.parse().map_err(|e| format!("--conns: {e}"))?,
            "--frame-bytes" => {
                a.frame_bytes = value()?
                    .parse()
                    .map_err(|e| format!("--frame-bytes: {e}"))?
            }
            "--seconds" => a.seconds = value()?.parse().map_err(|e| format!("--seconds: {e}"))?,
            "--k" => {
                a.ks = value()?
                    .split(',')
                    .map(|k| k.trim().parse::<usize>().map_err(|e| format!("--k: {e}")))
                    .collect::<Result<_, _>>()?
            }
            "--slices" => a.slices = value()?.parse().map_err(|e| format!("--slices: {e}"))?,
            "--writev" => a.writev = true,
            "--json" => a.json = true,
            "-h" | "--help" => return Err(USAGE.to_owned()),
            other => return Err(format!("unknown flag {other}\n{USAGE}")),
        }
    }
    if a.conns == 0
        || a.frame_bytes < 2
        || a.frame_bytes > 125
        || a.ks.contains(&0)
        || a.slices == 0
    {
        return Err(format!(
            "need conns >= 1, 2 <= frame-bytes <= 125, k >= 1, slices >= 1\n{USAGE}"
        ));
    }
    if !(a.seconds.is_finite() && a.seconds > 0.0) {
        return Err("--seconds must be > 0".to_owned());
    }
    Ok(a)
}

/// One row of the result: the measurement of one k, in slices.
struct Row {
    k: usize,
    writes: u64,
    wall_s: f64,
    /// µs of writer CPU per write in each slice, sorted.
    slices: Vec<f64>,
}

impl Row {
    /// The median slice: one descheduled or cache-cold slice on a shared
    /// machine moves the mean, not the median.
    fn us_per_write(&self) -> f64 {
        self.slices
            .get(self.slices.len() / 2)
            .copied()
            .unwrap_or(0.0)
    }
    fn us_per_msg(&self) -> f64 {
        self.us_per_write() / self.k as f64
    }
    fn spread_per_msg(&self) -> (f64, f64) {
        let k = self.k as f64;
        let lo = self.slices.first().copied().unwrap_or(0.0);
        let hi = self.slices.last().copied().unwrap_or(0.0);
        (lo / k, hi / k)
    }
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    match probe(&args) {
        Ok(rows) => report(&args, &rows),
        Err(e) => {
            eprintln!("sb-floor: {e}");
            std::process::exit(1);
        }
    }
}

fn probe(args: &Args) -> io::Result<Vec<Row>> {
    raise_fd_limit();
    let (writers, readers) = connect_pairs(args.conns)?;
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let stop = Arc::clone(&stop);
        thread::Builder::new()
            .name("floor-reader".into())
            .spawn(move || drain(readers, &stop))?
    };
    // A server frame: FIN+text, 7-bit length, then payload.
    let mut frame = vec![b'x'; args.frame_bytes];
    frame[0] = 0x81;
    frame[1] = (args.frame_bytes - 2) as u8;
    let mut rows = Vec::with_capacity(args.ks.len());
    let mut writers = writers;
    for &k in &args.ks {
        let buf = frame.repeat(k);
        let slices: Vec<IoSlice<'_>> = (0..k).map(|_| IoSlice::new(&frame)).collect();
        let write_one = |s: &mut TcpStream| -> io::Result<()> {
            let n = if args.writev {
                s.write_vectored(&slices)?
            } else {
                s.write(&buf)?
            };
            if n < buf.len() {
                s.write_all(&buf[n..])?; // rare: the socket buffer was nearly full
            }
            Ok(())
        };
        for s in writers.iter_mut() {
            write_one(s)?; // warm-up round, not measured
        }
        let slice = Duration::from_secs_f64(args.seconds / args.slices as f64);
        let start = Instant::now();
        let mut writes = 0u64;
        let mut slices = Vec::with_capacity(args.slices);
        for _ in 0..args.slices {
            let deadline = Instant::now() + slice;
            let cpu0 = thread_cpu_us();
            let mut n = 0u64;
            while Instant::now() < deadline {
                for s in writers.iter_mut() {
                    write_one(s)?;
                }
                n += writers.len() as u64;
            }
            let cpu_us = thread_cpu_us().saturating_sub(cpu0);
            slices.push(cpu_us as f64 / n.max(1) as f64);
            writes += n;
        }
        slices.sort_by(f64::total_cmp);
        rows.push(Row {
            k,
            writes,
            wall_s: start.elapsed().as_secs_f64(),
            slices,
        });
    }
    stop.store(true, Ordering::Release);
    drop(writers); // EOF wakes the reader
    let _ = reader.join();
    Ok(rows)
}

fn report(args: &Args, rows: &[Row]) {
    println!(
        "floor: {} loopback connections, {}-byte frames, {} per write, {:.1} s per k (writer CPU only)",
        args.conns,
        args.frame_bytes,
        if args.writev { "k iovecs" } else { "one buffer" },
        args.seconds
    );
    println!(
        "{:>4} {:>10} {:>10} {:>19} {:>12}",
        "k", "µs/write", "µs/msg", "µs/msg min..max", "msgs/s wall"
    );
    for r in rows {
        let (lo, hi) = r.spread_per_msg();
        println!(
            "{:>4} {:>10.3} {:>10.3} {:>9.3}..{:<9.3} {:>12.0}",
            r.k,
            r.us_per_write(),
            r.us_per_msg(),
            lo,
            hi,
            (r.writes * r.k as u64) as f64 / r.wall_s.max(1e-9)
        );
    }
    if args.json {
        let map = |f: &dyn Fn(&Row) -> f64| {
            let parts: Vec<String> = rows
                .iter()
                .map(|r| format!("\"{}\":{:.4}", r.k, f(r)))
                .collect();
            parts.join(",")
        };
        println!(
            "{{\"conns\":{},\"frame_bytes\":{},\"writev\":{},\"slices\":{},\"us_per_msg\":{{{}}},\"us_per_msg_min\":{{{}}},\"us_per_msg_max\":{{{}}}}}",
            args.conns,
            args.frame_bytes,
            args.writev,
            args.slices,
            map(&Row::us_per_msg),
            map(&|r| r.spread_per_msg().0),
            map(&|r| r.spread_per_msg().1),
        );
    }
}

/// `n` connected pairs: (accepted ends, to write; connecting ends, to read).
fn connect_pairs(n: usize) -> io::Result<(Vec<TcpStream>, Vec<TcpStream>)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let mut writers = Vec::with_capacity(n);
    let mut readers = Vec::with_capacity(n);
    for _ in 0..n {
        let r = TcpStream::connect(addr)?;
        let (w, _) = listener.accept()?;
        w.set_nodelay(true)?;
        r.set_nonblocking(true)?;
        writers.push(w);
        readers.push(r);
    }
    Ok((writers, readers))
}

/// Reads every connection until `stop`, discarding the bytes.
fn drain(readers: Vec<TcpStream>, stop: &AtomicBool) -> io::Result<()> {
    let mut poll = Poll::new()?;
    let mut streams: Vec<mio::net::TcpStream> = readers
        .into_iter()
        .map(mio::net::TcpStream::from_std)
        .collect();
    for (i, s) in streams.iter_mut().enumerate() {
        poll.registry().register(s, Token(i), Interest::READABLE)?;
    }
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; 64 * 1024];
    while !stop.load(Ordering::Acquire) {
        poll.poll(&mut events, Some(Duration::from_millis(100)))?;
        for ev in events.iter() {
            let Some(s) = streams.get_mut(ev.token().0) else {
                continue;
            };
            loop {
                match s.read(&mut buf) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => break, // WouldBlock, or the writer is gone
                }
            }
        }
    }
    Ok(())
}

/// CPU time of the calling thread (user + system), µs.
fn thread_cpu_us() -> u64 {
    // SAFETY: getrusage only writes into the zeroed struct we own.
    let u = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_THREAD, &mut u) != 0 {
            return 0;
        }
        u
    };
    let us = |tv: libc::timeval| tv.tv_sec as u64 * 1_000_000 + tv.tv_usec as u64;
    us(u.ru_utime) + us(u.ru_stime)
}

/// 2 × conns descriptors must fit: raise the soft limit to the hard one.
fn raise_fd_limit() {
    // SAFETY: getrlimit/setrlimit read and write the struct we own.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}
