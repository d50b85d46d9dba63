//! One run from start to end: start the workers, wait for setup, open the
//! run, sample the server around the measured window, drain, gather.
//!
//! Timeline (ns since `epoch`):
//! `setup … | publish_start … warmup … | window.start … window.end | drain`.

use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use mio::{Poll, Waker};

use crate::conn::{Sink, Window};
use crate::procstat;
use crate::report::{Latency, ServerStats, Summary};
use crate::sampler::{Sampler, Soak};
use crate::scenario::{self, Args, Plan};
use crate::stalled::Stalled;
use crate::worker::{Failures, RunParams, SetupReport, Shared, Worker, WorkerResult, WAKE};

/// How long the stalled receivers get, in all, to read to their close.
const STALLED_READ_LIMIT: Duration = Duration::from_secs(20);

/// Gap between the end of setup and the first publication.
const START_DELAY: Duration = Duration::from_millis(50);

/// Runs the load described by `args` and returns its figures.
pub fn run(args: &Args) -> Result<Summary, String> {
    let fd_limit = procstat::raise_fd_limit().map_err(|e| format!("raising RLIMIT_NOFILE: {e}"))?;
    let plan = Arc::new(scenario::plan(args, fd_limit).map_err(|e| e.to_string())?);
    let threads = args.threads.max(1);
    let server = ServerProbe::new(&args.server_pids);
    let rss_before = server.rss_kib();

    let epoch = Instant::now();
    let shared = Arc::new(Shared::new(epoch));
    let (ready_tx, ready_rx) = mpsc::channel::<SetupReport>();
    let mut wakers = Vec::with_capacity(threads);
    let mut handles = Vec::with_capacity(threads);
    for w in 0..threads {
        let poll = Poll::new().map_err(|e| format!("epoll: {e}"))?;
        let waker = Waker::new(poll.registry(), WAKE).map_err(|e| format!("waker: {e}"))?;
        wakers.push(waker);
        let mine: Vec<usize> = (w..plan.conns.len()).step_by(threads).collect();
        let worker = Worker::new(
            w,
            Arc::clone(&plan),
            &mine,
            Arc::clone(&shared),
            poll,
            args.connect_concurrency,
            Duration::from_secs_f64(args.connect_timeout.max(0.1)),
        );
        let tx = ready_tx.clone();
        let handle = thread::Builder::new()
            .name(format!("sb-load-{w}"))
            .spawn(move || worker.run(tx))
            .map_err(|e| format!("spawning worker: {e}"))?;
        handles.push(handle);
    }
    drop(ready_tx);
    let wake_all = |wakers: &[Waker]| wakers.iter().for_each(|w| drop(w.wake()));

    // Setup: every worker reports once all its connections joined or failed.
    let mut joined = vec![0u32; plan.channels.len()];
    let mut failures = Failures::default();
    let mut setup_done_ns = 0;
    let setup_limit = Duration::from_secs_f64(args.connect_timeout.max(0.1) + 30.0);
    for _ in 0..threads {
        let report = ready_rx
            .recv_timeout(setup_limit)
            .map_err(|_| "a worker failed during setup".to_owned())?;
        for (sum, n) in joined.iter_mut().zip(&report.joined) {
            *sum += n;
        }
        failures.add(&report.failures);
        setup_done_ns = setup_done_ns.max(report.done_ns);
    }
    let made: u64 = joined.iter().map(|&n| u64::from(n)).sum();
    if made == 0 {
        shared.stop();
        wake_all(&wakers);
        handles.into_iter().for_each(|h| drop(h.join()));
        return Err(format!(
            "no connection joined ({} failed: connect {}, handshake {}, join {}, timeout {})",
            failures.total(),
            failures.connect,
            failures.handshake,
            failures.join,
            failures.timeout
        ));
    }
    let rss_joined = server.rss_kib();
    // The server's RSS and fds over the run (its peak), and the receivers
    // that stop reading from here on.
    let sampler = server.active().then(|| {
        Sampler::start(
            &args.server_pids,
            Duration::try_from_secs_f64(args.sample_every.max(0.01))
                .unwrap_or(Duration::from_secs(1)),
        )
    });
    let stalled =
        (args.stalled > 0).then(|| Stalled::open(&plan, args.stalled, args.stalled_rcvbuf));

    // Run: publish through warmup and window, sample the server around the window.
    let publish_start_ns = shared.now_ns() + START_DELAY.as_nanos() as u64;
    let window_start_ns = publish_start_ns + plan.warmup.as_nanos() as u64;
    let window = Window {
        start_ns: window_start_ns,
        end_ns: window_start_ns + plan.duration.as_nanos() as u64,
    };
    shared.start(RunParams {
        publish_start_ns,
        window,
        members: joined.clone(),
    });
    wake_all(&wakers);
    sleep_until(epoch, window.start_ns);
    let (cpu0, self0) = (server.cpu_us(), procstat::self_cpu_us());
    sleep_until(epoch, window.end_ns);
    let (cpu1, self1) = (server.cpu_us(), procstat::self_cpu_us());
    let rss_end = server.rss_kib();

    // Drain: wait for what is still in flight, up to --drain.
    let drain_deadline = Instant::now() + plan.drain;
    thread::sleep(Duration::from_millis(20));
    let drain_complete = loop {
        let expected = shared.expected.load(std::sync::atomic::Ordering::Relaxed);
        let delivered = shared.delivered.load(std::sync::atomic::Ordering::Relaxed);
        if delivered >= expected {
            break true;
        }
        if Instant::now() >= drain_deadline {
            break false;
        }
        thread::sleep(Duration::from_millis(10));
    };
    shared.stop();
    wake_all(&wakers);
    let stalled = stalled.map(|st| st.finish(STALLED_READ_LIMIT));
    let soak = sampler.map(|sm| {
        let series = sm.finish();
        let end = series.last().map_or(0.0, |x| x.t_s);
        Soak::of(&series, 0.0, end)
    });
    let mut results = Vec::with_capacity(threads);
    for h in handles {
        match h.join() {
            Ok(Ok(r)) => results.push(r),
            Ok(Err(e)) => return Err(format!("worker: {e}")),
            Err(_) => return Err("a worker panicked".to_owned()),
        }
    }

    let totals = Totals::gather(results);
    let window_s = plan.duration.as_secs_f64();
    let per = |us: u64| (totals.in_window > 0).then(|| us as f64 / totals.in_window as f64);
    let conns = made.max(1) as f64;
    let server_stats = server.active().then(|| ServerStats {
        rss_before_kib: rss_before,
        rss_joined_kib: rss_joined,
        rss_end_kib: rss_end,
        rss_per_conn_bytes: rss_joined.saturating_sub(rss_before) as f64 * 1024.0 / conns,
        rss_per_conn_loaded_bytes: rss_end.saturating_sub(rss_before) as f64 * 1024.0 / conns,
        cpu_window_us: cpu1.saturating_sub(cpu0),
        cpu_us_per_delivery: per(cpu1.saturating_sub(cpu0)),
        cpu_cores: cpu1.saturating_sub(cpu0) as f64 / 1e6 / window_s.max(1e-9),
    });
    let connect_s = setup_done_ns as f64 / 1e9;
    Ok(Summary {
        scenario: format!("{:?}", plan.scenario).to_lowercase(),
        urls: args.urls.clone(),
        threads,
        conns_planned: plan.conns.len() as u64,
        conns_made: made,
        conns_failed: failures.total(),
        fail_connect: failures.connect,
        fail_handshake: failures.handshake,
        fail_join: failures.join,
        fail_timeout: failures.timeout,
        connect_s,
        connects_per_s: made as f64 / connect_s.max(1e-9),
        conns_dropped: totals.dropped,
        last_close_code: totals.last_close_code,
        channels: plan.channels.len() as u64,
        publishers: publishers(&plan),
        rate_per_publisher: plan.rate,
        warmup_s: plan.warmup.as_secs_f64(),
        duration_s: window_s,
        messages_sent: totals.sent,
        messages_sent_in_window: totals.sent_in_window,
        max_send_lag_ms: totals.max_send_lag_ns as f64 / 1e6,
        deliveries_expected: totals.expected,
        deliveries_received: totals.sink.delivered,
        lost: totals.expected.saturating_sub(totals.sink.delivered),
        duplicated: totals.sink.duplicates,
        reordered: totals.sink.reordered,
        unparsed: totals.sink.unparsed,
        unstamped: totals.sink.other,
        offered_deliveries_per_s: totals.expected_in_window as f64 / window_s.max(1e-9),
        deliveries_per_s: totals.in_window as f64 / window_s.max(1e-9),
        latency: Latency::from_ns(&totals.sink.hist),
        server: server_stats,
        client_cpu_us_per_delivery: per(self1.saturating_sub(self0)),
        drain_complete,
        tls: plan.tls.is_some(),
        compression: plan.compression,
        action_bytes: plan.action_bytes as u64,
        compressed_messages: totals.sink.compressed,
        wire_bytes_per_delivery: (totals.in_window > 0)
            .then(|| totals.sink.wire_bytes_in_window as f64 / totals.in_window as f64),
        stalled,
        soak,
    })
}

fn publishers(plan: &Plan) -> u64 {
    plan.conns.iter().filter(|c| c.publisher.is_some()).count() as u64
}

fn sleep_until(epoch: Instant, t_ns: u64) {
    let target = epoch + Duration::from_nanos(t_ns);
    let now = Instant::now();
    if target > now {
        thread::sleep(target - now);
    }
}

/// The workers' results added up.
struct Totals {
    sink: Sink,
    sent: u64,
    sent_in_window: u64,
    expected: u64,
    expected_in_window: u64,
    in_window: u64,
    dropped: u64,
    last_close_code: Option<u16>,
    max_send_lag_ns: u64,
}

impl Totals {
    fn gather(results: Vec<WorkerResult>) -> Totals {
        let mut sink = Sink::new(0);
        let (mut sent, mut sent_in_window, mut expected_in_window, mut dropped) = (0, 0, 0, 0);
        let mut expected = 0;
        let mut last_close_code = None;
        let mut max_send_lag_ns = 0;
        for r in results {
            max_send_lag_ns = max_send_lag_ns.max(r.max_send_lag_ns);
            last_close_code = r.last_close_code.or(last_close_code);
            let _ = sink.hist.add(&r.sink.hist);
            sink.delivered += r.sink.delivered;
            sink.delivered_in_window += r.sink.delivered_in_window;
            sink.duplicates += r.sink.duplicates;
            sink.reordered += r.sink.reordered;
            sink.unparsed += r.sink.unparsed;
            sink.other += r.sink.other;
            sink.wire_bytes_in_window += r.sink.wire_bytes_in_window;
            sink.compressed += r.sink.compressed;
            sent += r.sent;
            sent_in_window += r.sent_in_window;
            expected += r.expected;
            expected_in_window += r.expected_in_window;
            dropped += r.dropped;
        }
        Totals {
            in_window: sink.delivered_in_window,
            sink,
            sent,
            sent_in_window,
            expected,
            expected_in_window,
            dropped,
            last_close_code,
            max_send_lag_ns,
        }
    }
}

/// The server process(es) named by `--server-pid`; figures are summed.
struct ServerProbe {
    pids: Vec<u32>,
}

impl ServerProbe {
    fn new(pids: &[u32]) -> ServerProbe {
        ServerProbe {
            pids: pids.to_vec(),
        }
    }

    fn active(&self) -> bool {
        !self.pids.is_empty()
    }

    fn rss_kib(&self) -> u64 {
        self.pids
            .iter()
            .filter_map(|&p| procstat::rss_kib(p).ok())
            .sum()
    }

    fn cpu_us(&self) -> u64 {
        self.pids
            .iter()
            .filter_map(|&p| procstat::cpu_us(p).ok())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testserver::{self, Fault};
    use clap::Parser;

    fn run_against(fault: Fault) -> Summary {
        let url = testserver::start(fault);
        let pid = std::process::id().to_string();
        let args = Args::try_parse_from([
            "sb-load",
            "--url",
            &url,
            "--conns",
            "12",
            "--channels",
            "3",
            "--publishers",
            "2",
            "--rate",
            "40",
            "--warmup",
            "0.2",
            "--duration",
            "0.4",
            "--drain",
            "1",
            "--server-pid",
            &pid,
        ])
        .unwrap();
        run(&args).unwrap()
    }

    #[test]
    fn a_correct_server_loses_nothing() {
        let s = run_against(Fault::None);
        assert_eq!((s.conns_made, s.conns_failed), (12, 0));
        assert!(s.messages_sent >= 6 * 20, "{s:?}");
        assert_eq!(s.deliveries_expected, s.messages_sent * 4);
        assert_eq!(s.deliveries_received, s.deliveries_expected);
        assert!(s.problems().is_empty(), "{:?}", s.problems());
        assert!(s.drain_complete);
        assert!(s.latency.samples > 0 && s.latency.p50_us > 0.0);
        assert!(s.server.is_some_and(|sv| sv.rss_joined_kib > 0));
    }

    #[test]
    fn a_dropped_delivery_is_counted_lost() {
        let s = run_against(Fault::DropOne);
        // message 3 of each of 6 publishers misses the first member of its channel
        assert_eq!(s.lost, 6, "{s:?}");
        assert_eq!(s.duplicated, 0);
        assert!(!s.problems().is_empty());
    }

    #[test]
    fn a_duplicated_delivery_is_counted() {
        let s = run_against(Fault::DuplicateOne);
        assert_eq!(s.duplicated, 6 * 4, "{s:?}");
        assert_eq!(s.lost, 0);
    }
}
