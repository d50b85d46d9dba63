//! The `switchboard` child process.

use super::*;

/// Ready-line deadline for a freshly started server.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Cap on the stderr/stdout tail kept for a failure report.
const LOG_TAIL: usize = 256 * 1024;

/// A running `switchboard` child process, killed on drop. When the test is
/// panicking, the drop prints the server's log tail (captured by the test
/// harness and shown with the failure).
pub struct Server {
    pub addr: SocketAddr,
    pub pid: u32,
    child: Child,
    log: Arc<Mutex<Vec<u8>>>,
}

fn append_log(log: &Mutex<Vec<u8>>, bytes: &[u8]) {
    let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
    log.extend_from_slice(bytes);
    if log.len() > LOG_TAIL {
        let cut = log.len() - LOG_TAIL;
        log.drain(..cut);
    }
}

impl Server {
    /// Starts `switchboard --listen 127.0.0.1:0 --threads 2 --node t1 EXTRA..`
    /// and waits (10 s at most) for its ready line.
    pub fn start(extra: &[&str]) -> Server {
        Server::start_node("t1", extra)
    }

    /// As [`Server::start`] with another `--node` id.
    pub fn start_node(node: &str, extra: &[&str]) -> Server {
        Server::launch(node, &[], extra)
    }

    /// As [`Server::start`] with environment variables set for the child
    /// (on top of the test's own), for settings such as
    /// `SWITCHBOARD_HMAC_SECRET` that are read from the environment.
    pub fn start_with_env(env: &[(&str, &str)], extra: &[&str]) -> Server {
        Server::launch("t1", env, extra)
    }

    fn launch(node: &str, env: &[(&str, &str)], extra: &[&str]) -> Server {
        // SWITCHBOARD_TEST_BIN runs the suite against another build (e.g. a
        // release binary) without recompiling the tests.
        let bin = std::env::var_os("SWITCHBOARD_TEST_BIN")
            .unwrap_or_else(|| env!("CARGO_BIN_EXE_switchboard").into());
        let mut child = Command::new(bin)
            .args(["--listen", "127.0.0.1:0", "--threads", "2", "--node", node])
            .args(extra)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn switchboard: {e}"));
        let pid = child.id();
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("piped stderr");
        let stdout = child.stdout.take().expect("piped stdout");
        {
            let log = Arc::clone(&log);
            thread::spawn(move || {
                let mut stderr = stderr;
                let mut buf = [0u8; 8192];
                while let Ok(n) = stderr.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    append_log(&log, &buf[..n]);
                }
            });
        }
        let (tx, rx) = mpsc::channel::<String>();
        {
            let log = Arc::clone(&log);
            thread::spawn(move || {
                let mut tx = Some(tx);
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    append_log(&log, format!("[stdout] {line}\n").as_bytes());
                    if line.starts_with("switchboard listening on ") {
                        if let Some(tx) = tx.take() {
                            let _ = tx.send(line);
                        }
                    }
                }
            });
        }
        // Built before the ready line so that a failed start still kills the child.
        let mut server = Server {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            pid,
            child,
            log,
        };
        let line = match rx.recv_timeout(START_TIMEOUT) {
            Ok(line) => line,
            Err(e) => {
                let status = server.child.try_wait().ok().flatten();
                panic!(
                    "switchboard {extra:?} printed no ready line within {START_TIMEOUT:?} ({e}); \
                     exit status {status:?}; log:\n{}",
                    server.log_text()
                );
            }
        };
        let addr = line
            .trim()
            .rsplit(' ')
            .next()
            .and_then(|a| a.parse::<SocketAddr>().ok())
            .unwrap_or_else(|| panic!("unparseable ready line {line:?}"));
        server.addr = addr;
        server
    }

    /// The server's stdout/stderr tail so far.
    pub fn log_text(&self) -> String {
        let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        String::from_utf8_lossy(&log).into_owned()
    }

    /// A tungstenite client on `/ws?QUERY`, welcome already read.
    pub fn connect(&self, query: &str) -> Client {
        Client::connect(self.addr, query)
    }

    /// Sends a signal to the server process.
    pub fn signal(&self, sig: libc::c_int) {
        let pid = libc::pid_t::try_from(self.pid).expect("pid fits pid_t");
        // SAFETY: kill(2) takes plain integers and has no memory effects on us;
        // the pid is our own child, not yet reaped (we hold its `Child`).
        let rc = unsafe { libc::kill(pid, sig) };
        assert_eq!(
            rc,
            0,
            "kill({pid}, {sig}) failed: {}",
            io::Error::last_os_error()
        );
    }

    /// Waits for the process to exit; `None` if it is still running at `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) => {}
                Err(e) => panic!("try_wait: {e}"),
            }
            if Instant::now() >= deadline {
                return None;
            }
            // Polling a child's exit: there is no portable event to block on
            // with a timeout in std, so check every 20 ms.
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Resident memory of the server process in KiB, from `/proc/PID/status`.
    pub fn vm_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))
            .unwrap_or_else(|e| panic!("read /proc/{}/status: {e}", self.pid));
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no VmRSS in /proc/{}/status", self.pid))
    }

    pub fn http_get(&self, path: &str) -> HttpResponse {
        http_get(self.addr, path)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            eprintln!(
                "---- switchboard (pid {}) log tail ----\n{}\n---- end of log ----",
                self.pid,
                self.log_text()
            );
        }
    }
}
