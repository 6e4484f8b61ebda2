//! What running jobs tell the agent: their iteration times, over the same line protocol as MPS
//! profiling (`<MISO_JOB> <seconds of that iteration>\n` to `MISO_REPORT_HOST:MISO_REPORT_PORT`,
//! see `profile.rs`). The first iteration of each connection is dropped (warm-up). Per job,
//! only a sum and a count are kept, so a chatty or hostile job costs no memory; lines longer
//! than [`MAX_LINE`] bytes close the connection, at most [`MAX_KEYS`] jobs are tracked and
//! [`MAX_CONNECTIONS`] connections read at once.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Longest line accepted, in bytes.
pub const MAX_LINE: u64 = 256;
/// Most jobs tracked at once.
pub const MAX_KEYS: usize = 1024;
/// Most connections read at once (one thread each); more are closed at once.
pub const MAX_CONNECTIONS: usize = 256;

type Sums = Arc<Mutex<BTreeMap<String, (f64, u64)>>>;

/// A loopback listener collecting iteration times per job.
pub struct IterationSink {
    port: u16,
    sums: Sums,
    stop: Arc<AtomicBool>,
}

impl IterationSink {
    /// Listen on a free loopback port.
    pub fn start() -> std::io::Result<IterationSink> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        listener.set_nonblocking(true)?;
        let sums: Sums = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (s2, st2) = (sums.clone(), stop.clone());
        let open = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        std::thread::spawn(move || {
            while !st2.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        if open.load(Ordering::Relaxed) >= MAX_CONNECTIONS {
                            continue; // dropped: closed
                        }
                        let _ = stream.set_nonblocking(false);
                        let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
                        let (s3, st3, o3) = (s2.clone(), st2.clone(), open.clone());
                        o3.fetch_add(1, Ordering::Relaxed);
                        std::thread::spawn(move || {
                            read_lines(stream, &s3, &st3);
                            o3.fetch_sub(1, Ordering::Relaxed);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        });
        Ok(IterationSink { port, sums, stop })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Everything heard since the last call: per job, (mean seconds, iterations).
    pub fn drain(&self) -> BTreeMap<String, (f64, u64)> {
        let mut m = match self.sums.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        std::mem::take(&mut *m)
            .into_iter()
            .filter(|(_, (_, n))| *n > 0)
            .map(|(k, (sum, n))| (k, (sum / n as f64, n)))
            .collect()
    }
}

impl Drop for IterationSink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn read_lines(stream: std::net::TcpStream, sums: &Sums, stop: &AtomicBool) {
    let mut r = BufReader::new(stream);
    let mut first: BTreeMap<String, bool> = BTreeMap::new();
    let mut line = String::new();
    loop {
        line.clear();
        match (&mut r).take(MAX_LINE).read_line(&mut line) {
            Ok(0) => return,
            Ok(_) if !line.ends_with('\n') && line.len() as u64 >= MAX_LINE => return,
            Ok(_) => {
                let mut it = line.split_whitespace();
                let (Some(key), Some(v)) =
                    (it.next(), it.next().and_then(|s| s.parse::<f64>().ok()))
                else {
                    continue; // not the protocol: ignored
                };
                if !(v.is_finite() && v > 0.0) {
                    continue;
                }
                // The first iteration a connection reports for a job is its warm-up.
                if first.insert(key.to_string(), true).is_none() {
                    continue;
                }
                let mut m = match sums.lock() {
                    Ok(m) => m,
                    Err(p) => p.into_inner(),
                };
                if m.len() >= MAX_KEYS && !m.contains_key(key) {
                    continue;
                }
                let e = m.entry(key.to_string()).or_insert((0.0, 0));
                e.0 += v;
                e.1 += 1;
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
            }
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn iteration_times_are_averaged_per_job_without_the_warm_up_and_junk_is_ignored() {
        let sink = IterationSink::start().unwrap_or_else(|e| panic!("{e}"));
        let mut a = std::net::TcpStream::connect(("127.0.0.1", sink.port()))
            .unwrap_or_else(|e| panic!("{e}"));
        // Warm-up 9 s dropped; then 0.2 and 0.4; junk, negative and NaN ignored.
        a.write_all(b"j1 9\nj1 0.2\nnonsense\nj1 -1\nj1 NaN\nj1 0.4\nj2 5\n")
            .unwrap_or_else(|e| panic!("{e}"));
        // A line longer than the limit closes that connection only.
        let mut b = std::net::TcpStream::connect(("127.0.0.1", sink.port()))
            .unwrap_or_else(|e| panic!("{e}"));
        let _ = b.write_all(&vec![b'x'; 10_000]);
        let t = std::time::Instant::now();
        let mut got = BTreeMap::new();
        while t.elapsed() < Duration::from_secs(10) {
            got.extend(sink.drain());
            if got.contains_key("j1") {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let (mean, n) = got.get("j1").copied().unwrap_or((0.0, 0));
        assert_eq!(n, 2, "{got:?}");
        assert!((mean - 0.3).abs() < 1e-12);
        assert!(!got.contains_key("j2"), "a lone first iteration is warm-up");
        assert!(sink.drain().is_empty(), "drained");
        a.write_all(b"j1 0.5\n").unwrap_or_else(|e| panic!("{e}"));
        let t = std::time::Instant::now();
        while t.elapsed() < Duration::from_secs(10) {
            if let Some(v) = sink.drain().get("j1") {
                assert_eq!(*v, (0.5, 1));
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("the second report never arrived");
    }

    #[test]
    fn a_flood_of_idle_connections_does_not_stop_a_job_from_reporting() {
        let sink = IterationSink::start().unwrap_or_else(|e| panic!("{e}"));
        let idle: Vec<_> = (0..MAX_CONNECTIONS + 50)
            .filter_map(|_| std::net::TcpStream::connect(("127.0.0.1", sink.port())).ok())
            .collect();
        std::thread::sleep(Duration::from_millis(300));
        drop(idle);
        let t = std::time::Instant::now();
        // Once the idle ones are gone, a job is heard again.
        while t.elapsed() < Duration::from_secs(20) {
            if let Ok(mut a) = std::net::TcpStream::connect(("127.0.0.1", sink.port())) {
                let _ = a.write_all(b"j 1\nj 0.25\n");
                std::thread::sleep(Duration::from_millis(200));
                if let Some(v) = sink.drain().get("j") {
                    assert_eq!(*v, (0.25, 1));
                    return;
                }
            }
        }
        panic!("never heard after the flood");
    }
}
