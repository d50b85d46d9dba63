//! Reading a process's memory and CPU time from procfs (proc(5)), and this
//! process's own limits and CPU time.
//!
//! * `/proc/PID/status` `VmRSS:` is resident memory in KiB.
//! * `/proc/PID/stat` fields 14 and 15 (`utime`, `stime`) are CPU time of all
//!   the process's threads in clock ticks (`sysconf(_SC_CLK_TCK)`, usually
//!   100 Hz), which is why the measured window must be seconds long.
//!   Field 2 (`comm`) may hold spaces and parentheses, so fields are counted
//!   after the last `)`.

use std::io;

/// Resident set size of `pid` in KiB.
pub fn rss_kib(pid: u32) -> io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    parse_vmrss(&status).ok_or_else(|| invalid("no VmRSS line"))
}

/// Open file descriptors of `pid`: the entries of `/proc/PID/fd`.
pub fn fd_count(pid: u32) -> io::Result<u64> {
    Ok(std::fs::read_dir(format!("/proc/{pid}/fd"))?.count() as u64)
}

/// CPU time (user + system) of `pid` in microseconds.
pub fn cpu_us(pid: u32) -> io::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let ticks = parse_stat_ticks(&stat).ok_or_else(|| invalid("malformed stat"))?;
    Ok(ticks.saturating_mul(1_000_000) / clock_ticks_per_second())
}

/// CPU time (user + system) of this whole process in microseconds, at
/// microsecond resolution (getrusage(2)).
pub fn self_cpu_us() -> u64 {
    rusage_us(libc::RUSAGE_SELF)
}

fn rusage_us(who: libc::c_int) -> u64 {
    // SAFETY: getrusage only writes into the zeroed struct we own.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        if libc::getrusage(who, &mut usage) != 0 {
            return 0;
        }
        usage
    };
    let us = |tv: libc::timeval| tv.tv_sec as u64 * 1_000_000 + tv.tv_usec as u64;
    us(usage.ru_utime) + us(usage.ru_stime)
}

/// Raises this process's soft `RLIMIT_NOFILE` to its hard limit and returns
/// the new soft limit.
pub fn raise_fd_limit() -> io::Result<u64> {
    // SAFETY: getrlimit/setrlimit read and write the struct we own.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return Err(io::Error::last_os_error());
        }
        if lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(lim.rlim_cur)
    }
}

fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf has no memory effects.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 {
        hz as u64
    } else {
        100
    }
}

fn invalid(what: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

/// `VmRSS:   1234 kB` → 1234.
fn parse_vmrss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// utime + stime in ticks from the text of `/proc/PID/stat`.
fn parse_stat_ticks(stat: &str) -> Option<u64> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    // After `)`: field 3 (state) is the first; utime is field 14, stime 15.
    let mut fields = after_comm.split_whitespace().skip(14 - 3);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vmrss_line() {
        let status = "Name:\tx\nVmPeak:\t  9 kB\nVmRSS:\t   1234 kB\nThreads: 2\n";
        assert_eq!(parse_vmrss(status), Some(1234));
        assert_eq!(parse_vmrss("Name: x\n"), None);
    }

    #[test]
    fn stat_ticks_with_a_hostile_comm() {
        // comm "a) b (c" must not shift the fields.
        let stat = "77 (a) b (c) S 1 77 77 0 -1 4194560 100 0 0 0 31 7 0 0 20 0 1 0 5 0 0";
        assert_eq!(parse_stat_ticks(stat), Some(38));
        assert_eq!(parse_stat_ticks("77 (x) S 1"), None);
    }

    #[test]
    fn own_process_is_readable() {
        let pid = std::process::id();
        assert!(rss_kib(pid).unwrap() > 0);
        assert!(fd_count(pid).unwrap() >= 3);
        let mut x = 0u64;
        for i in 0..3_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        assert!(cpu_us(pid).is_ok());
        assert!(self_cpu_us() > 0);
    }
}
