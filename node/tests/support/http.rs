//! A small HTTP/1.1 server for tests: static files, or `git http-backend` as CGI, with
//! optional basic auth. One thread per connection; every response closes the connection.
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;

/// What the server serves.
#[derive(Clone)]
pub enum Route {
    /// Files under a directory.
    Static(PathBuf),
    /// Git repositories under a directory, through `git http-backend`.
    Git(PathBuf),
}

/// A running server; stops when dropped.
pub struct HttpServer {
    pub port: u16,
    pub requests: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl HttpServer {
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// Start serving `route` on a loopback port; `auth` requires basic auth with that user/password.
pub fn serve(route: Route, auth: Option<(&str, &str)>) -> HttpServer {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    serve_on(listener, route, auth)
}

/// Serve on an already bound listener (when the port must be known first).
pub fn serve_on(listener: TcpListener, route: Route, auth: Option<(&str, &str)>) -> HttpServer {
    let port = listener.local_addr().expect("addr").port();
    listener.set_nonblocking(true).expect("nonblocking");
    let stop = Arc::new(AtomicBool::new(false));
    let requests = Arc::new(AtomicUsize::new(0));
    let expected = auth.map(|(u, p)| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
        )
    });
    let (s, r) = (stop.clone(), requests.clone());
    let handle = std::thread::spawn(move || {
        while !s.load(Ordering::SeqCst) {
            match listener.accept() {
                Ok((stream, _)) => {
                    r.fetch_add(1, Ordering::SeqCst);
                    let (route, expected) = (route.clone(), expected.clone());
                    std::thread::spawn(move || {
                        let _ = handle(stream, &route, expected.as_deref());
                    });
                }
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    });
    HttpServer {
        port,
        requests,
        stop,
        handle: Some(handle),
    }
}

fn handle(stream: TcpStream, route: &Route, auth: Option<&str>) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("/").to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h == "\r\n" || h == "\n" {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let header = |k: &str| headers.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let mut body = Vec::new();
    if header("transfer-encoding").is_some_and(|t| t.contains("chunked")) {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size)?;
            let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16)
                .unwrap_or(0);
            let mut chunk = vec![0; n + 2];
            reader.read_exact(&mut chunk)?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    } else if let Some(len) = header("content-length").and_then(|l| l.parse::<usize>().ok()) {
        body.resize(len, 0);
        reader.read_exact(&mut body)?;
    }
    let mut out = stream;
    if let Some(expected) = auth {
        if header("authorization").as_deref() != Some(expected) {
            return respond(
                &mut out,
                "401 Unauthorized",
                &[("WWW-Authenticate", "Basic realm=\"git\"")],
                b"",
            );
        }
    }
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    match route {
        Route::Static(root) => {
            let file = root.join(path.trim_start_matches('/'));
            match std::fs::read(&file) {
                Ok(data) if file.starts_with(root) => respond(&mut out, "200 OK", &[], &data),
                _ => respond(&mut out, "404 Not Found", &[], b"not found"),
            }
        }
        Route::Git(root) => {
            let mut cmd = Command::new("git");
            cmd.arg("http-backend")
                .env_clear()
                .env("PATH", std::env::var("PATH").unwrap_or_default())
                .env("GIT_PROJECT_ROOT", root)
                .env("GIT_HTTP_EXPORT_ALL", "1")
                .env("REQUEST_METHOD", &method)
                .env("PATH_INFO", path)
                .env("QUERY_STRING", query)
                .env("REMOTE_ADDR", "127.0.0.1")
                .env("CONTENT_LENGTH", body.len().to_string())
                .env("REMOTE_USER", "test")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::null());
            if let Some(ct) = header("content-type") {
                cmd.env("CONTENT_TYPE", ct);
            }
            if let Some(ce) = header("content-encoding") {
                cmd.env("HTTP_CONTENT_ENCODING", ce);
            }
            if let Some(gp) = header("git-protocol") {
                cmd.env("GIT_PROTOCOL", gp);
            }
            let mut child = cmd.spawn()?;
            let mut stdin = child.stdin.take().expect("stdin");
            let writer = std::thread::spawn(move || {
                let _ = stdin.write_all(&body);
            });
            let mut output = Vec::new();
            child
                .stdout
                .take()
                .expect("stdout")
                .read_to_end(&mut output)?;
            let _ = writer.join();
            child.wait()?;
            let split = output
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .map(|i| (i, 4))
                .or_else(|| output.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2)));
            let Some((i, sep)) = split else {
                return respond(
                    &mut out,
                    "500 Internal Server Error",
                    &[],
                    b"bad cgi output",
                );
            };
            let head = String::from_utf8_lossy(&output[..i]).into_owned();
            let mut status = "200 OK".to_string();
            let mut hs: Vec<(String, String)> = Vec::new();
            for l in head.lines() {
                if let Some((k, v)) = l.split_once(':') {
                    if k.eq_ignore_ascii_case("status") {
                        status = v.trim().to_string();
                    } else {
                        hs.push((k.trim().to_string(), v.trim().to_string()));
                    }
                }
            }
            let refs: Vec<(&str, &str)> =
                hs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            respond(&mut out, &status, &refs, &output[i + sep..])
        }
    }
}

fn respond(
    out: &mut TcpStream,
    status: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<()> {
    let mut head = format!("HTTP/1.1 {status}\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    out.write_all(head.as_bytes())?;
    out.write_all(body)?;
    out.flush()
}
