//! Running external tools: no shell, a scrubbed environment, a timeout and an output limit.
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

use super::RenderError;

/// Bytes of stderr kept for error messages.
const STDERR_KEEP: usize = 16 << 10;

/// Flags whose value is a secret: their value is redacted in `Debug` output.
const SECRET_FLAGS: &[&str] = &["--password", "--username", "--token", "--access-token"];

/// One tool invocation. Its `Debug` redacts the values of [`SECRET_FLAGS`] and of
/// arguments added with [`ToolRun::secret_arg`], and prints only environment names.
pub(crate) struct ToolRun {
    /// Program to execute (never a shell).
    pub program: PathBuf,
    /// Arguments, passed as is.
    pub args: Vec<OsString>,
    /// Working directory.
    pub cwd: PathBuf,
    /// The whole environment of the tool (nothing is inherited).
    pub env: Vec<(String, String)>,
    /// Wall-clock limit.
    pub timeout: Duration,
    /// Limit on stdout bytes.
    pub limit: usize,
    /// How to name the run in errors (no secrets).
    pub what: String,
    /// Indexes into `args` of secret arguments.
    secret: Vec<usize>,
}

impl ToolRun {
    /// The arguments as shown in `Debug`: secret values replaced by `<redacted>`.
    fn shown_args(&self) -> Vec<String> {
        let mut out = Vec::with_capacity(self.args.len());
        let mut after_flag = false;
        for (i, a) in self.args.iter().enumerate() {
            let a = a.to_string_lossy();
            let flag = SECRET_FLAGS
                .iter()
                .find(|f| a.as_ref() == **f || a.starts_with(&format!("{f}=")));
            let bare = flag.is_some_and(|f| a.as_ref() == *f);
            if after_flag || self.secret.contains(&i) {
                out.push("<redacted>".to_string());
            } else if let Some(f) = flag.filter(|f| a.len() > f.len()) {
                out.push(format!("{f}=<redacted>"));
            } else {
                out.push(a.into_owned());
            }
            after_flag = bare;
        }
        out
    }
}

impl std::fmt::Debug for ToolRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ToolRun")
            .field("program", &self.program)
            .field("args", &self.shown_args())
            .field("cwd", &self.cwd)
            .field("env", &self.env.iter().map(|(k, _)| k).collect::<Vec<_>>())
            .field("timeout", &self.timeout)
            .field("limit", &self.limit)
            .field("what", &self.what)
            .finish()
    }
}

impl ToolRun {
    /// A run of `program` in `cwd` with a minimal environment: `PATH` and `HOME`.
    pub fn new(
        program: &Path,
        cwd: &Path,
        home: &Path,
        path_var: &str,
        what: impl Into<String>,
    ) -> Self {
        Self {
            program: program.to_path_buf(),
            args: Vec::new(),
            cwd: cwd.to_path_buf(),
            env: vec![
                ("PATH".into(), path_var.to_string()),
                ("HOME".into(), home.to_string_lossy().into_owned()),
            ],
            timeout: Duration::from_secs(90),
            limit: 64 << 20,
            what: what.into(),
            secret: Vec::new(),
        }
    }

    /// Append an argument that `Debug` must not show.
    #[allow(dead_code)]
    pub fn secret_arg(&mut self, a: impl Into<OsString>) -> &mut Self {
        self.secret.push(self.args.len());
        self.arg(a)
    }

    /// Append an argument.
    pub fn arg(&mut self, a: impl Into<OsString>) -> &mut Self {
        self.args.push(a.into());
        self
    }

    /// Set an environment variable.
    pub fn env(&mut self, k: impl Into<String>, v: impl Into<String>) -> &mut Self {
        self.env.push((k.into(), v.into()));
        self
    }

    /// Run to completion; returns stdout.
    pub async fn run(&self) -> Result<Vec<u8>, RenderError> {
        let mut cmd = tokio::process::Command::new(&self.program);
        cmd.args(&self.args)
            .current_dir(&self.cwd)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            // Its own process group, so whatever it starts is killed with it.
            .process_group(0);
        let mut child = cmd.spawn().map_err(|e| RenderError::ToolMissing {
            tool: self.program.display().to_string(),
            hint: format!("cannot start it: {e}"),
        })?;
        let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            return Err(RenderError::Task("tool pipes missing".into()));
        };
        let limit = self.limit;
        let deadline = tokio::time::Instant::now() + self.timeout;
        let err_task = tokio::spawn(read_tail(stderr));
        let timed_out = || RenderError::Timeout {
            what: self.what.clone(),
            timeout: self.timeout,
        };
        let out = match tokio::time::timeout_at(deadline, read_limited(stdout, limit)).await {
            Ok(r) => r,
            Err(_) => {
                kill_group(&mut child).await;
                return Err(timed_out());
            }
        };
        let out = match out {
            Ok(Some(o)) => o,
            Ok(None) => {
                kill_group(&mut child).await;
                return Err(RenderError::OutputTooLarge {
                    what: self.what.clone(),
                    limit,
                });
            }
            Err(e) => {
                kill_group(&mut child).await;
                return Err(super::io_err(format!("read output of {}", self.what))(e));
            }
        };
        let status = match tokio::time::timeout_at(deadline, child.wait()).await {
            Ok(s) => s,
            Err(_) => {
                kill_group(&mut child).await;
                return Err(timed_out());
            }
        };
        // Nothing the tool started outlives it.
        kill_group(&mut child).await;
        let err = err_task.await.unwrap_or_default();
        let status = status.map_err(super::io_err(format!("wait for {}", self.what)))?;
        if !status.success() {
            return Err(RenderError::ToolFailed {
                what: self.what.clone(),
                status: status.to_string(),
                stderr: String::from_utf8_lossy(&err).trim().to_string(),
            });
        }
        Ok(out)
    }
}

/// Kill the child's process group (the child and everything it started), then the child.
async fn kill_group(child: &mut tokio::process::Child) {
    if let Some(pid) = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .and_then(rustix::process::Pid::from_raw)
    {
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
    let _ = child.kill().await;
}

/// Read everything, or `None` as soon as more than `limit` bytes arrive.
async fn read_limited(
    mut r: impl AsyncRead + Unpin,
    limit: usize,
) -> std::io::Result<Option<Vec<u8>>> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = r.read(&mut buf).await?;
        if n == 0 {
            return Ok(Some(out));
        }
        if out.len() + n > limit {
            return Ok(None);
        }
        out.extend_from_slice(&buf[..n]);
    }
}

/// Read everything, keeping only the last [`STDERR_KEEP`] bytes.
async fn read_tail(mut r: impl AsyncRead + Unpin) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 8 << 10];
    while let Ok(n) = r.read(&mut buf).await {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
        if out.len() > 2 * STDERR_KEEP {
            out.drain(..out.len() - STDERR_KEEP);
        }
    }
    if out.len() > STDERR_KEEP {
        out.drain(..out.len() - STDERR_KEEP);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_secret_arguments_and_environment_values() {
        let mut t = run(&[
            "--username",
            "alice",
            "--password",
            "hunter2",
            "--token=tok",
        ]);
        t.secret_arg("marked-secret").arg("--plain").arg("shown");
        t.env("SECRET_ENV", "envvalue");
        let shown = format!("{t:?}");
        for secret in ["alice", "hunter2", "tok\"", "marked-secret", "envvalue"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(
            shown.contains("--password") && shown.contains("shown"),
            "{shown}"
        );
        assert!(shown.contains("SECRET_ENV"), "{shown}");
    }

    fn run(args: &[&str]) -> ToolRun {
        let dir = std::env::temp_dir();
        let mut t = ToolRun::new(Path::new("/bin/sh"), &dir, &dir, "/usr/bin:/bin", "sh test");
        for a in args {
            t.arg(*a);
        }
        t
    }

    #[tokio::test]
    async fn env_is_scrubbed_and_args_are_not_shell_parsed() {
        std::env::set_var("FLOTILLA_TOOL_TEST_SECRET", "leak");
        let out = run(&[
            "-c",
            "echo \"$FLOTILLA_TOOL_TEST_SECRET|$1\"",
            "x",
            "a b;$(id)",
        ])
        .run()
        .await
        .expect("runs");
        assert_eq!(String::from_utf8_lossy(&out), "|a b;$(id)\n");
    }

    #[tokio::test]
    async fn timeout_kills() {
        let mut t = run(&["-c", "sleep 30"]);
        t.timeout = Duration::from_millis(200);
        let err = t.run().await.unwrap_err();
        assert!(matches!(err, RenderError::Timeout { .. }), "{err}");
    }

    #[tokio::test]
    async fn processes_the_tool_started_are_killed_too() {
        let dir = tempfile::tempdir().expect("tmp");
        let pid_file = dir.path().join("pid");
        let script = format!("sleep 300 & echo $! > {}; wait", pid_file.display());
        let mut t = run(&["-c", &script]);
        t.timeout = Duration::from_millis(300);
        assert!(matches!(t.run().await, Err(RenderError::Timeout { .. })));
        let pid = std::fs::read_to_string(&pid_file).expect("pid written");
        let stat = format!("/proc/{}/stat", pid.trim());
        // Killed: gone, or a zombie waiting for its new parent to reap it.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let state = std::fs::read_to_string(&stat)
                .ok()
                .and_then(|s| s.rsplit(')').next().map(|r| r.trim().chars().next()))
                .flatten();
            if matches!(state, None | Some('Z') | Some('X')) {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "background sleep survived: {state:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn output_limit_kills() {
        let mut t = run(&["-c", "yes flotilla"]);
        t.limit = 1 << 20;
        let err = t.run().await.unwrap_err();
        assert!(matches!(err, RenderError::OutputTooLarge { .. }), "{err}");
    }

    #[tokio::test]
    async fn failure_reports_stderr() {
        let err = run(&["-c", "echo broken >&2; exit 3"])
            .run()
            .await
            .unwrap_err();
        assert!(err.to_string().contains("broken"), "{err}");
    }
}
