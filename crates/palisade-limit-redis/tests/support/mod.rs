//! A real `redis-server` on a free loopback port, in a temporary directory,
//! stopped when dropped. A test that needs one fails (never skips) when
//! `redis-server` is not installed: `cargo xtask test` installs it.
#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One server process.
pub(crate) struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free loopback port");
    listener.local_addr().unwrap().port()
}

impl RedisServer {
    /// Starts a server and waits (at most 10 s) until it accepts connections.
    pub(crate) fn start() -> Self {
        let port = free_port();
        let dir =
            std::env::temp_dir().join(format!("palisade-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut server = RedisServer {
            child: None,
            port,
            dir,
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .args(["--enable-debug-command", "yes"])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start redis-server ({e}): these tests need a real Redis; \
                     `cargo xtask test` installs it (apt-get install redis-server)"
                )
            });
        self.child = Some(child);
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "redis-server did not accept connections on port {} within 10 s",
                self.port
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The server's URL.
    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the process (as a crash would) and waits for it to exit.
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port, empty (no script loaded, no keys).
    pub(crate) fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// A plain synchronous command through `redis-cli`-less RESP, for setting up
    /// and inspecting keys: sends `args` and returns the raw reply.
    pub(crate) fn command(&self, args: &[&[u8]]) -> Vec<u8> {
        use std::io::{Read, Write};
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a);
            out.extend_from_slice(b"\r\n");
        }
        stream.write_all(&out).unwrap();
        let mut buf = vec![0u8; 4096];
        let n = stream.read(&mut buf).unwrap();
        buf.truncate(n);
        buf
    }

    /// Sends `args` without waiting for the reply (for `DEBUG SLEEP`).
    pub(crate) fn command_no_wait(&self, args: &[&[u8]]) -> TcpStream {
        use std::io::Write;
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a);
            out.extend_from_slice(b"\r\n");
        }
        stream.write_all(&out).unwrap();
        stream
    }

    /// Redis's clock, in microseconds.
    pub(crate) fn time_micros(&self) -> u64 {
        let reply = String::from_utf8(self.command(&[b"TIME"])).unwrap();
        let parts: Vec<&str> = reply.split("\r\n").collect();
        // *2 / $n / secs / $n / micros
        let secs: u64 = parts[2].parse().unwrap();
        let micros: u64 = parts[4].parse().unwrap();
        secs * 1_000_000 + micros
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
