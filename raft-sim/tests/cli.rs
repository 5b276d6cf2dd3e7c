//! The `raft-sim` command as a user runs it.

use std::process::{Command, Output};

fn raft_sim(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_raft-sim")).args(args).output().expect("raft-sim runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn the_same_seed_prints_the_same_output_byte_for_byte() {
    let args = ["run", "--seed", "42", "--duration", "3000"];
    let a = raft_sim(&args);
    let b = raft_sim(&args);
    assert!(a.status.success(), "{}\n{}", stdout(&a), String::from_utf8_lossy(&a.stderr));
    assert_eq!(stdout(&a), stdout(&b));
    let out = stdout(&a);
    for line in
        ["options (drawn from the seed", "summary:", "events", "virtual time", "elections", "client ops", "trace hash:", "result: OK"]
    {
        assert!(out.contains(line), "missing '{line}' in:\n{out}");
    }
    let other = raft_sim(&["run", "--seed", "43", "--duration", "3000"]);
    assert_ne!(stdout(&a), stdout(&other), "another seed is another run");
}

#[test]
fn a_trace_file_holds_the_event_log_and_does_not_change_the_run() {
    let dir = std::env::temp_dir().join(format!("raft-sim-trace-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("trace.txt");
    let with = raft_sim(&["run", "--seed", "5", "--duration", "2000", "--trace", path.to_str().unwrap()]);
    let without = raft_sim(&["run", "--seed", "5", "--duration", "2000"]);
    assert!(with.status.success());
    assert_eq!(stdout(&with), stdout(&without), "tracing only observes");
    let trace = std::fs::read_to_string(&path).unwrap();
    assert!(trace.lines().count() > 100, "the trace has the events");
    assert!(trace.contains("is Leader of term"), "it names elections");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn explicit_faults_replace_the_seeds_schedule() {
    let o = raft_sim(&["run", "--seed", "9", "--duration", "2000", "--faults", "crash@500:1,restart@900:1,partition@1000:1.2,heal@1500"]);
    assert!(o.status.success(), "{}", stdout(&o));
    let out = stdout(&o);
    assert!(out.contains("faults (4): crash@500:1,restart@900:1,partition@1000:1.2,heal@1500"), "{out}");
    assert!(out.contains("crash=1"), "{out}");
}

#[test]
fn bad_flags_get_a_clear_error_and_status_2() {
    let cases: &[(&[&str], &str)] = &[
        (&["run"], "--seed"),
        (&["run", "--seed", "x"], "invalid value"),
        (&["run", "--seed", "1", "--loss", "2000000"], "--loss"),
        (&["run", "--seed", "1", "--nodes", "0"], "--nodes"),
        (&["run", "--seed", "1", "--faults", "explode@5:1"], "unknown fault kind"),
        (&["explore", "--seeds", "5..2"], "empty seed range"),
        (&["explore", "--seeds", "abc"], "START..END"),
        (&["frobnicate"], "unrecognized subcommand"),
    ];
    for (args, want) in cases {
        let o = raft_sim(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(want), "{args:?}: expected '{want}' in: {err}");
    }
}

#[test]
fn help_documents_every_option() {
    let o = raft_sim(&["run", "--help"]);
    let help = stdout(&o);
    for flag in [
        "--seed",
        "--trace",
        "--faults",
        "--no-shrink",
        "--nodes",
        "--duration",
        "--loss",
        "--dup",
        "--crash-every",
        "--compaction",
        "--pre-vote",
    ] {
        assert!(help.contains(flag), "run --help lacks {flag}");
    }
    let help = stdout(&raft_sim(&["explore", "--help"]));
    for flag in ["--seeds", "--jobs", "--quiet"] {
        assert!(help.contains(flag), "explore --help lacks {flag}");
    }
}

#[test]
fn explore_runs_seeds_in_parallel_and_summarises() {
    let o = raft_sim(&["explore", "--seeds", "0..6", "--jobs", "2", "--duration", "2000", "--quiet"]);
    let out = stdout(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("summary: 6 seeds"), "{out}");
    assert!(out.contains("violations: 0"), "{out}");
}
