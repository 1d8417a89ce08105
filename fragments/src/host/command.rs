//! Commands: resolved program, explicit timeout, captured output, and the whole argv plus the tail of
//! stderr in every error.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How many trailing lines of output an error carries.
const TAIL_LINES: usize = 10;

/// What a rooted host does with a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RootedRun {
    /// The command acts on the live system only: record it, do not run it.
    Never,
    /// The command takes `<flag>=<root>` to act on a tree (`systemctl --root`).
    WithFlag(&'static str),
}

#[derive(Clone, Debug)]
pub struct Cmd {
    pub program: String,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub timeout: Duration,
    pub rooted: RootedRun,
    /// The command only reads (`blkid`, `pvs`): a successful run is recorded as unchanged, so a converged
    /// node that is probed again reports no change, and a host that cannot run it skips it unrecorded (a
    /// probe that is not run changes nothing, and a plan has no use for it).
    pub read_only: bool,
}

impl Cmd {
    pub fn new(program: &str) -> Self {
        Cmd {
            program: program.to_string(),
            args: Vec::new(),
            env: Vec::new(),
            timeout: Duration::from_secs(120),
            rooted: RootedRun::Never,
            read_only: false,
        }
    }

    /// Marks the command as one that changes nothing (see [`Cmd::read_only`]).
    pub fn reads_only(mut self) -> Self {
        self.read_only = true;
        self
    }

    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, args: I) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn rooted(mut self, rooted: RootedRun) -> Self {
        self.rooted = rooted;
        self
    }

    pub(super) fn argv(&self) -> Vec<String> {
        std::iter::once(self.program.clone()).chain(self.args.iter().cloned()).collect()
    }

    pub(super) fn argv_with_root(&self, flag: &str, root: &Path) -> Vec<String> {
        let mut argv = vec![self.program.clone(), format!("{flag}={}", root.display())];
        argv.extend(self.args.iter().cloned());
        argv
    }

    /// The command line as shown in reports.
    pub fn display(&self) -> String {
        shell_words(&self.argv())
    }
}

fn shell_words(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            if !a.is_empty() && a.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,@+".contains(c)) {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CmdOutput {
    /// False when the host recorded the command instead of running it.
    pub ran: bool,
    pub stdout: String,
    pub stderr: String,
}

impl CmdOutput {
    pub(super) fn not_run() -> Self {
        CmdOutput::default()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("`{argv}` could not start: {source}")]
    Spawn { argv: String, source: std::io::Error },
    #[error("`{argv}` did not finish within {timeout:?} and was killed{}", tail_suffix(.tail))]
    Timeout { argv: String, timeout: Duration, tail: String },
    #[error("`{argv}` failed with {status}{}", tail_suffix(.tail))]
    Failed { argv: String, status: String, tail: String },
}

fn tail_suffix(tail: &str) -> String {
    if tail.is_empty() {
        String::new()
    } else {
        format!("; last output:\n{tail}")
    }
}

/// The last lines of a command's stderr (or stdout when stderr is empty).
fn tail(stdout: &str, stderr: &str) -> String {
    let text = if stderr.trim().is_empty() { stdout } else { stderr };
    let lines: Vec<&str> = text.trim_end().lines().collect();
    lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n")
}

pub(super) fn run(argv: &[String], timeout: Duration, env: &[(String, String)]) -> Result<CmdOutput, CommandError> {
    let shown = shell_words(argv);
    let mut child = Command::new(&argv[0])
        .args(&argv[1..])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so a timeout kills the children a script started too.
        .process_group(0)
        .spawn()
        .map_err(|source| CommandError::Spawn { argv: shown.clone(), source })?;
    // Drain both pipes on threads so a chatty command cannot block on a full pipe. The buffers are
    // shared so that after a timeout the output so far can be read without waiting for a grandchild
    // that still holds a pipe open.
    let drain = |mut pipe: Box<dyn Read + Send>| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&buffer);
        let thread = std::thread::spawn(move || {
            let mut chunk = [0u8; 8192];
            while let Ok(n @ 1..) = pipe.read(&mut chunk) {
                sink.lock().unwrap_or_else(|e| e.into_inner()).extend_from_slice(&chunk[..n]);
            }
        });
        (buffer, thread)
    };
    let (out, out_thread) = drain(Box::new(child.stdout.take().expect("piped stdout")));
    let (err, err_thread) = drain(Box::new(child.stderr.take().expect("piped stderr")));
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if started.elapsed() >= timeout => {
                let group = rustix::process::Pid::from_child(&child);
                let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(source) => return Err(CommandError::Spawn { argv: shown, source }),
        }
    };
    if status.is_some() {
        let _ = out_thread.join();
        let _ = err_thread.join();
    }
    let text = |buffer: &Arc<Mutex<Vec<u8>>>| {
        String::from_utf8_lossy(&buffer.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    };
    let (stdout, stderr) = (text(&out), text(&err));
    match status {
        None => Err(CommandError::Timeout { argv: shown, timeout, tail: tail(&stdout, &stderr) }),
        Some(status) if !status.success() => {
            Err(CommandError::Failed { argv: shown, status: status.to_string(), tail: tail(&stdout, &stderr) })
        }
        Some(_) => Ok(CmdOutput { ran: true, stdout, stderr }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Vec<String> {
        vec!["sh".into(), "-c".into(), script.into()]
    }

    #[test]
    fn failures_carry_the_argv_and_the_stderr_tail() {
        let e = run(&sh("for i in $(seq 1 20); do echo line$i >&2; done; exit 3"), Duration::from_secs(5), &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("`sh -c 'for i in"), "{e}");
        assert!(e.contains("exit status: 3"), "{e}");
        assert!(e.contains("line20") && e.contains("line11") && !e.contains("line10\n"), "{e}");
    }

    #[test]
    fn a_hung_command_is_killed_at_its_timeout() {
        let started = Instant::now();
        let e = run(&sh("echo started; sleep 30"), Duration::from_millis(300), &[]).unwrap_err();
        assert!(matches!(e, CommandError::Timeout { .. }), "{e}");
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(e.to_string().contains("started"), "{e}");
    }

    #[test]
    fn missing_programs_say_so() {
        let e = run(&["/nonexistent/prog".into()], Duration::from_secs(1), &[]).unwrap_err().to_string();
        assert!(e.contains("/nonexistent/prog") && e.contains("could not start"), "{e}");
    }
}
