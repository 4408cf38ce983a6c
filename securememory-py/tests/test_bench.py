"""`python -m securememory.bench` runs, with and without the Rust command-line tool. Never a timing assertion."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap

CASES = [
    "with_bytes/protected_memory",
    "with_bytes/memguard",
    "new_close/protected_memory",
    "new_close/memguard",
    "create_random_close/protected_memory",
    "create_random_close/memguard",
    "with_bytes/sealed",
    "new_close/sealed",
    "create_random_close/sealed",
    "with_bytes/4_threads_one_secret",
]


def run_bench(tmp_path, *args: str, cli: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "SECUREMEMORY_CLI"}
    env["PATH"] = os.path.dirname(sys.executable)  # no `securememory` tool on it
    if cli is not None:
        env["SECUREMEMORY_CLI"] = cli
    return subprocess.run(
        [sys.executable, "-m", "securememory.bench", "--smoke", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env=env,
    )


def table_rows(stdout: str) -> dict[str, list[str]]:
    return {line.split()[0]: line.split() for line in stdout.splitlines() if line.split() and "/" in line.split()[0]}


def test_without_the_rust_tool_prints_python_figures_and_says_why_there_is_no_baseline(tmp_path) -> None:
    bench = run_bench(tmp_path)
    assert bench.returncode == 0, bench.stderr
    rows = table_rows(bench.stdout)
    assert set(CASES) <= set(rows), bench.stdout
    for case in CASES[:-1]:
        assert rows[case][-2:] == ["no", "baseline"], rows[case]
    assert "no Rust baseline: the securememory command-line tool was not found" in bench.stdout
    # The threads case compares with the one-thread Python figure, which is always there.
    assert rows["with_bytes/4_threads_one_secret"][-1] in ("met", "missed")


FAKE_CLI = textwrap.dedent(
    """\
    #!{python}
    import json, sys
    args = sys.argv[1:]
    assert args[:2] == ["bench", "--json"], args
    text = args[args.index("--filter") + 1]
    for name, ns in {rows!r}.items():
        if text in name:
            print(json.dumps({{"name": name, "ns_per_op": ns, "baseline": "floor", "baseline_ns": 1.0}}))
    """
)


def test_with_a_rust_tool_every_row_gets_its_baseline_and_goal(tmp_path) -> None:
    rust = {name: 1000.0 for name in CASES[:-1]}
    rust["with_bytes/1_MiB"] = 5.0  # rows the bench does not use are ignored
    cli = tmp_path / "securememory"
    cli.write_text(FAKE_CLI.format(python=sys.executable, rows=rust))
    cli.chmod(cli.stat().st_mode | stat.S_IXUSR)
    bench = run_bench(tmp_path, "--json", cli=str(cli))
    assert bench.returncode == 0, bench.stderr
    rows = table_rows(bench.stdout)
    for case in CASES:
        assert rows[case][-1] in ("met", "missed"), rows[case]
    records = [json.loads(line) for line in bench.stdout.splitlines() if line.startswith("{")]
    by_name = {record["name"]: record for record in records}
    assert set(by_name) == set(CASES)
    assert by_name["with_bytes/memguard"]["baseline_ns"] == 1000.0
    assert by_name["with_bytes/memguard"]["goal_ns"] == 2000.0
    assert by_name["new_close/memguard"]["goal_ns"] == 2500.0
    assert "no Rust baseline" not in bench.stdout


def test_a_failing_rust_tool_is_reported_not_raised(tmp_path) -> None:
    cli = tmp_path / "securememory"
    cli.write_text(f"#!{sys.executable}\nimport sys\nsys.exit(3)\n")
    cli.chmod(cli.stat().st_mode | stat.S_IXUSR)
    bench = run_bench(tmp_path, "--filter", "with_bytes/memguard", cli=str(cli))
    assert bench.returncode == 0, bench.stderr
    assert f"no Rust baseline: running {cli} failed" in bench.stdout
    assert table_rows(bench.stdout)["with_bytes/memguard"][-2:] == ["no", "baseline"]
