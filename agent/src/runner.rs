//! The runner: the role's steps in catalogue order, fail fast, one record per step, state on disk, and
//! the Heat signal as the last thing, whatever happened before it.

use crate::client;
use crate::report::{self, StepRecord, StepResult};
use crate::signal::{self, SignalBody};
use crate::state::{self, RunState, StateDir, Status};
use anyhow::{anyhow, bail, Result};
use hearth_fragments::facts::{Facts, OsFamily};
use hearth_fragments::host::{Host, Mode};
use hearth_fragments::step::{Context, Done};
use hearth_fragments::steps::{self, Entry, Implementation};
use hearth_fragments::NodeConfig;
use serde_json::json;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

#[derive(Clone, Debug)]
pub struct RunOptions {
    pub mode: Mode,
    /// Run only this step (by name or part); no signal.
    pub only: Option<String>,
    /// Start at this step (resume by hand); the signal is still sent at the end.
    pub from: Option<String>,
    /// Use this OS family instead of reading `/etc/os-release` (rooted runs of an empty directory).
    pub os: Option<OsFamily>,
    /// Events as JSON lines on stdout instead of progress lines.
    pub json: bool,
}

/// The steps a run covers, chosen before anything is touched so a typo changes nothing.
pub fn select(config: &NodeConfig, options: &RunOptions) -> Result<Vec<&'static Entry>> {
    let all = steps::catalogue(config.role);
    let find = |wanted: &str| {
        steps::find(config.role, wanted).ok_or_else(|| {
            let names: Vec<&str> = all.iter().map(|e| e.name).collect();
            anyhow!("no step {wanted:?} for a {}; its steps are: {}", config.role, names.join(", "))
        })
    };
    Ok(match (&options.only, &options.from) {
        (Some(_), Some(_)) => bail!("give --only or --from, not both"),
        (Some(only), None) => vec![find(only)?],
        (None, Some(from)) => {
            let first = find(from)?.part;
            all.iter().filter(|e| e.part >= first).collect()
        }
        (None, None) => all.iter().collect(),
    })
}

struct Run<'a> {
    config: &'a NodeConfig,
    options: &'a RunOptions,
    state: Option<StateDir>,
    /// Every step and the signal, not `--only`/`--from`: the run whose record is the node's.
    full: bool,
    started: Instant,
    status: Status,
}

impl Run<'_> {
    fn event(&self, mut event: serde_json::Value) {
        event["at"] = json!(state::now());
        if self.options.json {
            crate::say!("{event}");
        }
        if let Some(state) = &self.state {
            if let Err(e) = state.event(&event) {
                tracing::warn!("could not record an event: {e:#}");
            }
        }
    }

    fn save(&mut self) {
        self.status.duration_ms = self.started.elapsed().as_millis() as u64;
        if let Some(state) = &self.state {
            let written = if self.full { state.write_status(&self.status) } else { state.write_partial(&self.status) };
            if let Err(e) = written {
                tracing::warn!("could not write the status file: {e:#}");
            }
        }
    }
}

/// Runs `entries` (from [`select`]) and sends the signal. Returns the final status; `state` says how it went.
pub fn run(config: &NodeConfig, options: &RunOptions, entries: &[&'static Entry]) -> Result<Status> {
    // Built once, so every step's requests share the CA bundle, proxy and retry policy; a client that
    // does not build fails only the steps that need the network, with the reason.
    let host = Host::new(options.mode.clone()).with_http(client::for_node(config, client::steps_deadline(config)));
    let dry_run = host.is_dry_run();
    let mut run = Run {
        config,
        options,
        full: options.only.is_none() && options.from.is_none(),
        state: (!dry_run).then(|| StateDir::under(host.root())),
        started: Instant::now(),
        status: Status {
            agent_version: env!("CARGO_PKG_VERSION").to_string(),
            role: config.role,
            node: String::new(),
            os: String::new(),
            state: RunState::Running,
            started_at: state::now(),
            finished_at: None,
            duration_ms: 0,
            steps: Vec::new(),
            failure: None,
            signal: None,
        },
    };
    let _lock = run.state.as_ref().map(StateDir::lock).transpose()?;
    if let Some(state) = run.state.as_ref().filter(|_| run.full) {
        // A full run in progress or failed is not converged, whatever an earlier run said. A partial run
        // leaves the full run's record and the marker alone.
        state.clear_done()?;
    }

    match gather_facts(&host, options.os) {
        Ok(facts) => {
            run.status.node = config.node_name(&facts.hostname);
            run.status.os = facts.os.to_string();
            run.event(json!({"event": "run-start", "role": config.role, "node": run.status.node, "os": run.status.os,
                "steps": entries.len(), "dry_run": dry_run}));
            run.save();
            let refused = steps::check(config, entries.iter().copied());
            if refused.is_empty() {
                run_steps(&mut run, entries, &Context { config, facts: &facts, host: &host });
            } else {
                let reasons: Vec<String> = refused.iter().map(ToString::to_string).collect();
                run.status.failure =
                    Some(config.scrub(&format!("config refused before any step ran: {}", reasons.join("; "))));
            }
        }
        Err(e) => run.status.failure = Some(format!("facts: {}", config.scrub(&format!("{e:#}")))),
    }

    let succeeded = run.status.failure.is_none();
    run.status.state = if succeeded { RunState::Succeeded } else { RunState::Failed };
    run.status.finished_at = Some(state::now());
    run.save();
    let summary = report::summary(&run.status.steps, run.status.duration_ms);
    match &run.status.failure {
        Some(reason) => tracing::error!("run failed: {reason}"),
        None if !options.json => {
            // Under --root the operator must see which tree the run wrote (or would write).
            let under = match &options.mode {
                Mode::Rooted(root) | Mode::DryRun { root } if root != std::path::Path::new("/") => {
                    format!(" (under {})", root.display())
                }
                _ => String::new(),
            };
            crate::say!("{} {}: {summary}{under}", config.role, run.status.node);
        }
        None => {}
    }

    let signal_selected = entries.iter().any(|e| matches!(e.implementation, Implementation::Signal));
    if signal_selected && !dry_run {
        send_signal(&mut run, &summary);
    }
    if let Some(state) = &run.state {
        match (run.status.state, run.full) {
            (RunState::Succeeded, true) => state.mark_done(&summary)?,
            // A step that fails now leaves the node unconverged, whatever the last full run said.
            (RunState::Failed, false) => state.clear_done()?,
            _ => {}
        }
    }
    run.event(json!({"event": "run-end", "state": run.status.state, "summary": summary,
        "failure": run.status.failure}));
    run.save();
    Ok(run.status)
}

fn gather_facts(host: &Host, os: Option<OsFamily>) -> Result<Facts> {
    match Facts::gather(host) {
        Ok(facts) => Ok(Facts { os: os.unwrap_or(facts.os), ..facts }),
        Err(e) => match os {
            // An empty root has no os-release; the operator said which OS it stands for.
            Some(os) => Ok(Facts { hostname: "localhost".into(), os }),
            None => Err(e.context("finding out what this host is (pass --os for a root without os-release)")),
        },
    }
}

fn run_steps(run: &mut Run, entries: &[&Entry], ctx: &Context) {
    let total = entries.iter().filter(|e| !matches!(e.implementation, Implementation::Signal)).count();
    let dry_run = ctx.host.is_dry_run();
    for (index, entry) in entries.iter().enumerate() {
        let started = Instant::now();
        // `None`: the step applied, and whether it changed anything is read from the host's journal.
        let (result, reason, degraded) = match entry.implementation {
            Implementation::Signal => continue,
            Implementation::Step(step) => {
                run.event(json!({"event": "step-start", "part": entry.part, "step": entry.name}));
                match catch_unwind(AssertUnwindSafe(|| step(ctx))) {
                    Ok(Ok(Done::Applied)) => (None, String::new(), None),
                    Ok(Ok(Done::Degraded(why))) => (None, String::new(), Some(run.config.scrub(&why))),
                    Ok(Ok(Done::Skipped(why))) => (Some(StepResult::Skipped), why, None),
                    Ok(Err(e)) => (Some(StepResult::Failed), format!("{e:#}"), None),
                    Err(panic) => {
                        (Some(StepResult::Failed), format!("the step panicked: {}", panic_message(&panic)), None)
                    }
                }
            }
        };
        let actions = ctx.host.take_actions();
        let result = result.unwrap_or_else(|| StepRecord::result_from(&actions));
        let record = StepRecord {
            part: entry.part,
            name: entry.name.to_string(),
            result,
            reason: run.config.scrub(&reason),
            duration_ms: started.elapsed().as_millis() as u64,
            degraded,
            actions,
        };
        if !run.options.json {
            crate::say!("{}", record.progress_line(index + 1, total));
            if dry_run {
                for action in &record.actions {
                    crate::say!(
                        "          {:<7} {:<12} {} {}",
                        action.kind.word(),
                        action.outcome.words(),
                        action.target,
                        action.detail
                    );
                }
            }
        }
        run.event(json!({"event": "step-end", "record": record}));
        let failed = record.result == StepResult::Failed;
        if failed {
            run.status.failure = Some(format!("{}: {}", record.label(), record.reason));
        }
        run.status.steps.push(record);
        run.save();
        if failed {
            return;
        }
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}

fn send_signal(run: &mut Run, summary: &str) {
    let config = run.config;
    if config.signal.endpoint.is_empty() {
        tracing::warn!("the config has no wait-condition endpoint: Heat is not told how this run went");
        return;
    }
    let id = signal::node_signal_id(Some(run.config), &run.status.node);
    // Heat shows the reason in the stack's events and status; `data` reaches the wait condition's
    // `data` attribute, where the summary is what an operator wants next to each node.
    let body = match &run.status.failure {
        None => SignalBody::success(id, &format!("{} {} configured by hearth-agent", config.role, run.status.node)),
        Some(reason) => SignalBody::failure(id, reason),
    }
    .with_data(summary);
    let record = signal::deliver(config, &config.signal.endpoint, config.signal.token.expose(), body);
    run.event(json!({"event": "signal", "status": record.body.status, "sent": record.sent.is_some(),
        "error": record.error}));
    if record.error.is_some() && run.status.failure.is_none() {
        run.status.state = RunState::Failed;
    }
    run.status.signal = Some(record);
}
