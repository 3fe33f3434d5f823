"""Run every benchmark in sequence and write the results to ``bench/RESULTS.md``.

Each script runs as its own subprocess (``python bench/<name>.py``, from the repo root), in
the order of :data:`BENCHES`; its stdout is shown live and kept, its stderr goes to a log
file. A script that fails is recorded as failed, with the tail of its stderr, and the next
one runs; ``run_all`` exits non-zero at the end if any failed (or was missing).

The results file holds the machine (CPU, cores, RAM, OS, Python / PySpark / Java and
library versions, git commit and whether the tree was dirty), the date, a summary of every
script (status, duration, the targets it checked) and, per script, the command and the
result sections it printed. The scripts print no machine-readable summary, so their
output is read as ``bench/common.py`` formats it:

* a result section starts at the banner of ``common.header`` (a line of ``=``, the title,
  the machine / corpus / method lines, a line of ``=``) and runs until the next progress
  line (``timing ...``, ``  run 1/3 ...``, ``effective cores (...)``) or the next banner;
* inside it, tables of ``common.table`` (a header line over a line of dashes, fixed-width
  columns) become Markdown tables, profiles (``profile ...`` / ``cProfile ...`` blocks)
  are folded away, everything else is kept verbatim;
* ``target >= X ... PASS`` / ``BELOW TARGET`` lines (``common.verdict``, and
  ``target <= X`` from ``scale.py``) are collected into one table of targets.

A script whose output has no banner is shown whole (its tail when long). The full stdout
and stderr of every script are kept under ``<out>/run_all/``.

    .venv/bin/python bench/run_all.py                     # every script, full size
    .venv/bin/python bench/run_all.py --quick             # smoke test of every script
    .venv/bin/python bench/run_all.py --only scan,build   # some of them
    make bench BENCH_ARGS="--only read --runs 5"

``--quick`` writes ``<out>/RESULTS-quick.md`` unless ``--results`` is given, so a smoke
test never replaces the results of a full run.

For example, the target lines are read like this:

>>> parse_checks(["ours / (b) baseline (files/s ratio)          12.00x      target >= 7x   PASS"])
[Check(label='ours / (b) baseline (files/s ratio)', value='12.00x', target='>= 7x', passed=True, note='')]
"""

from __future__ import annotations

import argparse
import contextlib
import html
import importlib.metadata
import os
import platform
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "bench_out"
DEFAULT_RESULTS = REPO / "bench" / "RESULTS.md"
STDERR_TAIL = 40  # lines of stderr kept in the results for a failed script
FALLBACK_LINES = 200  # lines of stdout shown for a script that printed no banner


@dataclass(frozen=True)
class Bench:
    """One benchmark script and the arguments ``--quick`` gives it."""

    name: str
    quick: tuple[str, ...] = ("--quick",)

    @property
    def script(self) -> Path:
        return REPO / "bench" / f"{self.name}.py"


#: Every benchmark, in the order they run: the DICOM ones first, text (the longest) last.
BENCHES = (
    Bench("scan"),
    Bench("build"),
    Bench("read"),
    Bench("train_read"),
    Bench("layouts"),
    # scale.py has no --quick: one small size, no Spark build
    Bench("scale", quick=("--sizes", "2000", "--spark", "")),
    Bench("text"),
)

Status = Literal["ok", "failed", "missing", "interrupted", "pending"]


@dataclass
class Outcome:
    """What one script did in this run."""

    bench: Bench
    command: list[str]
    status: Status = "pending"
    returncode: int | None = None
    started: datetime | None = None
    seconds: float | None = None
    stdout: str = ""
    stderr_tail: str = ""
    stdout_log: Path | None = None
    stderr_log: Path | None = None


# --------------------------------------------------------------------------------------
# Running the scripts
# --------------------------------------------------------------------------------------


def command_for(bench: Bench, *, quick: bool, runs: int | None, out: Path) -> list[str]:
    cmd = [sys.executable, str(bench.script.relative_to(REPO))]
    if quick:
        cmd += bench.quick
    if runs is not None:
        cmd += ["--runs", str(runs)]
    return [*cmd, "--out", str(out)]


def shown(cmd: Sequence[str]) -> str:
    """``cmd`` as a shell line, with paths under the repo relative to it."""
    parts = []
    for a in cmd:
        if os.path.isabs(a) and Path(a).is_relative_to(REPO):
            a = os.path.relpath(a, REPO)
        parts.append(shlex.quote(a))
    return " ".join(parts)


def run(outcome: Outcome, logs: Path) -> None:
    """Run ``outcome.command``: stdout live to ours and kept, stderr to a log file."""
    outcome.started = datetime.now(timezone.utc)
    if not outcome.bench.script.exists():
        outcome.status = "missing"
        outcome.stderr_tail = f"{outcome.bench.script.relative_to(REPO)} does not exist"
        return
    logs.mkdir(parents=True, exist_ok=True)
    outcome.stdout_log = logs / f"{outcome.bench.name}.stdout.txt"
    outcome.stderr_log = logs / f"{outcome.bench.name}.stderr.txt"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    kept: list[str] = []
    t0 = time.perf_counter()
    with outcome.stdout_log.open("w") as out_fh, outcome.stderr_log.open("w") as err_fh:
        # a session of its own, so that an interrupt can stop the script and its JVM together
        proc = subprocess.Popen(
            outcome.command,
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=err_fh,
            text=True,
            errors="replace",
            start_new_session=True,
        )
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                sys.stdout.write(line)
                sys.stdout.flush()
                out_fh.write(line)
                kept.append(line)
            proc.wait()
            outcome.status = "ok" if proc.returncode == 0 else "failed"
        except KeyboardInterrupt:
            stop(proc)
            outcome.status = "interrupted"
            raise
        finally:
            outcome.seconds = time.perf_counter() - t0
            outcome.stdout = "".join(kept)
            outcome.returncode = proc.returncode
            err_fh.flush()
            if outcome.status != "ok":
                text = outcome.stderr_log.read_text(errors="replace")
                outcome.stderr_tail = tail(text, STDERR_TAIL)


def stop(proc: subprocess.Popen[str]) -> None:
    """Stop a script's process group: SIGINT, then SIGTERM, then SIGKILL."""
    for sig, wait in ((signal.SIGINT, 10), (signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            continue
    with contextlib.suppress(ProcessLookupError):  # what it left in its group (JVM, workers)
        os.killpg(proc.pid, signal.SIGTERM)


def tail(text: str, n: int) -> str:
    return "\n".join(text.rstrip().splitlines()[-n:])


# --------------------------------------------------------------------------------------
# The machine
# --------------------------------------------------------------------------------------

#: Libraries whose versions go into the results (besides Python, PySpark and Java).
PACKAGES = (
    "iac-spark",
    "iatro-base-iac",
    "iatro-iac-adapters",
    "pyarrow",
    "pydicom",
    "numpy",
    "deltalake",
    "delta-spark",
    "zstandard",
)


def _read(path: str) -> str:
    try:
        with open(path, errors="replace") as fh:
            return fh.read()
    except OSError:
        return ""


def _command_output(cmd: Sequence[str]) -> str | None:
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=REPO)
    except (OSError, subprocess.SubprocessError):
        return None
    return (p.stdout + p.stderr).strip() if p.returncode == 0 else None


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def cpu_model() -> str:
    for line in _read("/proc/cpuinfo").splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown"


def ram() -> str:
    m = re.search(r"^MemTotal:\s+(\d+) kB", _read("/proc/meminfo"), re.M)
    return f"{int(m.group(1)) / 1024**2:.1f} GiB" if m else "unknown"


def os_name() -> str:
    m = re.search(r'^PRETTY_NAME="?([^"\n]*)"?', _read("/etc/os-release"), re.M)
    name = m.group(1) if m else platform.system()
    return f"{name}, {platform.system()} {platform.release()} {platform.machine()}"


def java_version() -> str:
    home = os.environ.get("JAVA_HOME")
    java = os.path.join(home, "bin", "java") if home else shutil.which("java")
    if not java or not os.path.exists(java):
        return "not found (JAVA_HOME unset and no java on PATH)"
    out = _command_output([java, "-version"])
    return f"{out.splitlines()[0]} ({java})" if out else f"`{java} -version` failed"


def git_state() -> str:
    # --no-optional-locks: reading the state must not rewrite the index
    git = ["git", "--no-optional-locks", "-C", str(REPO)]
    commit = _command_output([*git, "rev-parse", "HEAD"])
    if commit is None:
        return "not a git checkout"
    branch = _command_output([*git, "rev-parse", "--abbrev-ref", "HEAD"]) or "?"
    status = _command_output([*git, "status", "--porcelain", "--untracked-files=normal"])
    if status is None:
        dirty = "dirty: unknown"
    elif status:
        dirty = f"**dirty**: {len(status.splitlines())} paths modified or untracked"
    else:
        dirty = "clean"
    return f"`{commit[:12]}` on {branch} ({dirty})"


def load_average() -> str:
    if not hasattr(os, "getloadavg"):
        return "unknown"
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def machine() -> list[tuple[str, str]]:
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 0
    python = f"{platform.python_version()} ({shown([sys.executable])})"
    return [
        ("host", platform.node()),
        ("CPU", cpu_model()),
        ("cores", f"{os.cpu_count()} logical, {usable} usable by this process"),
        ("RAM", ram()),
        ("OS", os_name()),
        ("Python", python),
        ("PySpark", _version("pyspark")),
        ("Java", java_version()),
        ("libraries", ", ".join(f"{d} {_version(d)}" for d in PACKAGES)),
        ("git", git_state()),
    ]


# --------------------------------------------------------------------------------------
# Reading the scripts' output
# --------------------------------------------------------------------------------------

RULE = re.compile(r"^={40,}$")
#: Lines a script prints while it measures, not in its results.
PROGRESS = re.compile(
    r"^(timing\b|warm-up\b|effective cores \(|  run \d+/\d+\s"
    r"|generating corpus|generated in |building )"
)
DASHES = re.compile(r"^-+(?:  -+)*$")
PROFILE = re.compile(r"^c?[Pp]rofile\b")
FOOTER = re.compile(r"^(--quick:|reproduce:)")
CHECK = re.compile(r"^(?P<before>.*\S)\s+target (?P<op>>=|<=) (?P<target>.*?)\s+"
                   r"(?P<result>PASS|BELOW TARGET|ABOVE TARGET)\b\s*(?P<note>.*?)\s*$")  # fmt: skip
VALUE = re.compile(
    r"^(?P<label>.*\S)\s+(?P<value>[-+]?(?:\d[\d,]*(?:\.\d*)?|nan|inf)(?:\s?[^\s\d]\S*)?)$"
)


@dataclass(frozen=True)
class Section:
    """One result section a script printed: its banner (title, header lines) and body."""

    title: str
    header: list[str]
    body: list[str]


@dataclass(frozen=True)
class Check:
    """One target line: what was measured, its value, the target and whether it was met."""

    label: str
    value: str
    target: str
    passed: bool
    note: str = ""  # what the script printed after the verdict, e.g. a per-round ratio


def sections(lines: Sequence[str]) -> list[Section]:
    """The result sections in a script's stdout (see the module docstring)."""
    found: list[Section] = []
    i = 0
    while i < len(lines):
        close = _banner_end(lines, i)
        if close is None:
            i += 1
            continue
        body: list[str] = []
        j = close + 1
        while j < len(lines) and _banner_end(lines, j) is None and not PROGRESS.match(lines[j]):
            body.append(lines[j])
            j += 1
        found.append(Section(lines[i + 1].strip(), list(lines[i + 2 : close]), _trim(body)))
        i = j
    return found


def _banner_end(lines: Sequence[str], i: int) -> int | None:
    """The index of the closing rule if a banner opens at ``lines[i]``."""
    if not RULE.match(lines[i]):
        return None
    for k in range(i + 2, min(i + 12, len(lines))):
        if RULE.match(lines[k]):
            return k
    return None


def _trim(lines: list[str]) -> list[str]:
    while lines and not lines[0].strip():
        lines = lines[1:]
    while lines and not lines[-1].strip():
        lines = lines[:-1]
    return lines


def parse_checks(lines: Sequence[str]) -> list[Check]:
    """The target lines among ``lines`` (``common.verdict`` and ``scale.at_most``)."""
    checks = []
    for line in lines:
        m = CHECK.match(line)
        if m is None:
            continue
        v = VALUE.match(m["before"])
        label, value = (v["label"].strip(), v["value"]) if v else (m["before"].strip(), "")
        target = f"{m['op']} {m['target']}"
        checks.append(Check(label, value, target, m["result"] == "PASS", m["note"]))
    return checks


@dataclass(frozen=True)
class Block:
    kind: Literal["text", "table", "profile"]
    lines: list[str]


def blocks(body: Sequence[str]) -> Iterator[Block]:
    """Split a section body into tables, profiles and runs of other text."""
    text: list[str] = []
    i = 0
    while i < len(body):
        line = body[i]
        if PROFILE.match(line) and (i == 0 or not body[i - 1].strip()):
            j = i
            while j < len(body) and not FOOTER.match(body[j]):
                j += 1
            yield from _text(text)
            text = []
            yield Block("profile", _trim(list(body[i:j])))
            i = j
            continue
        end = _table_end(body, i)
        if end is not None:
            yield from _text(text)
            text = []
            yield Block("table", list(body[i:end]))
            i = end
            continue
        text.append(line)
        i += 1
    yield from _text(text)


def _text(lines: list[str]) -> Iterator[Block]:
    trimmed = _trim(lines)
    if trimmed:
        yield Block("text", trimmed)


def _columns(dashes: str) -> list[tuple[int, int]]:
    """(start, end) of each column of a ``common.table`` from its line of dashes."""
    spans, start = [], 0
    for run_ in dashes.split("  "):
        spans.append((start, start + len(run_)))
        start += len(run_) + 2
    return spans


def _table_end(body: Sequence[str], i: int) -> int | None:
    """If a ``common.table`` starts at ``body[i]`` (its header line), the index after it."""
    if i + 1 >= len(body) or not DASHES.match(body[i + 1]):
        return None
    spans = _columns(body[i + 1])
    width = spans[-1][1]

    def fits(line: str) -> bool:
        return len(line) == width and all(line[s - 2 : s] == "  " for s, _ in spans[1:])

    if not fits(body[i]):
        return None
    j = i + 2
    while j < len(body) and fits(body[j]):
        j += 1
    return j


def markdown_table(lines: Sequence[str]) -> list[str]:
    spans = _columns(lines[1])

    def row(line: str) -> str:
        cells = [line[s:e].strip().replace("|", "\\|") for s, e in spans]
        return "| " + " | ".join(cells) + " |"

    align = ["---" if k == 0 else "---:" for k in range(len(spans))]
    return [row(lines[0]), "| " + " | ".join(align) + " |", *(row(x) for x in lines[2:])]


def fenced(lines: Sequence[str]) -> list[str]:
    text = "\n".join(lines)
    fence = "```"
    while fence in text:
        fence += "`"
    return [fence + "text", *lines, fence]


# --------------------------------------------------------------------------------------
# The results file
# --------------------------------------------------------------------------------------


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds < 90:
        return f"{seconds:.1f} s"
    minutes, s = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {s:02d} s"
    return f"{minutes // 60} h {minutes % 60:02d} min"


def utc(t: datetime | None) -> str:
    return t.strftime("%Y-%m-%d %H:%M:%S UTC") if t else "–"


def _logs(o: Outcome) -> str:
    if o.stdout_log is None or o.stderr_log is None:
        return ""
    return f" Full output: `{shown([str(o.stdout_log)])}`, `{shown([str(o.stderr_log)])}`."


def render_outcome(o: Outcome) -> list[str]:
    md = [f"## bench/{o.bench.name}.py", "", f"`{shown(o.command)}`", ""]
    if o.status == "pending":
        return [*md, "Not run (the run stopped before it).", ""]
    code = f", exit code {o.returncode}" if o.returncode not in (None, 0) else ""
    md += [f"**{o.status}**{code} after {duration(o.seconds)}, started {utc(o.started)}.{_logs(o)}"]
    md.append("")
    if o.status in ("failed", "missing", "interrupted") and o.stderr_tail:
        md += ["stderr (last lines):", "", *fenced(o.stderr_tail.splitlines()), ""]
    lines = o.stdout.splitlines()
    found = sections(lines)
    if not found:
        if lines:
            shown_lines = lines[-FALLBACK_LINES:]
            cut = len(lines) - len(shown_lines)
            note = f"its last {len(shown_lines)} lines" if cut else "all of it"
            md += [f"No result banner in its output; stdout ({note}):", ""]
            md += [*fenced(shown_lines), ""]
        return md
    for sec in found:
        md += [f"### {sec.title}", "", *fenced(sec.header), ""]
        for b in blocks(sec.body):
            if b.kind == "table":
                md += [*markdown_table(b.lines), ""]
            elif b.kind == "profile":
                summary = html.escape(b.lines[0].rstrip(":")[:120], quote=False)
                md += ["<details><summary>" + summary + "</summary>", ""]
                md += [*fenced(b.lines), "", "</details>", ""]
            else:
                md += [*fenced(b.lines), ""]
    return md


def render(
    outcomes: Sequence[Outcome],
    argv: Sequence[str],
    *,
    quick: bool,
    started: datetime,
    finished: datetime | None,
    host: list[tuple[str, str]],
    load: tuple[str, str],
) -> str:
    total = (finished - started).total_seconds() if finished else None
    span = f"{utc(started)} – {utc(finished)} ({duration(total)})" if finished else (
        f"{utc(started)} – still running"
    )  # fmt: skip
    md = [
        "# Benchmark results",
        "",
        f"Written by `bench/run_all.py` (`make bench`): `{shown(argv)}`, {span}. "
        "Rerun `make bench` to refresh this file; `bench/README.md` describes the scripts, "
        "their baselines and the method.",
        "",
    ]
    if quick:
        md += [
            "**--quick: a smoke test on small inputs.** Fixed costs dominate; do not quote "
            "these figures or judge the targets by them.",
            "",
        ]
    md += ["## Machine", "", "| | |", "|---|---|"]
    md += [f"| {k} | {v.replace('|', '/')} |" for k, v in host]
    md += [f"| load average (1/5/15 min) | {load[0]} at the start, {load[1]} at the end |", ""]
    md += ["## Summary", "", "| script | status | duration | targets met |", "|---|---|---:|---|"]
    all_checks: list[tuple[str, Check]] = []
    for o in outcomes:
        checks = parse_checks(o.stdout.splitlines())
        all_checks += [(o.bench.name, c) for c in checks]
        met = f"{sum(c.passed for c in checks)} of {len(checks)}" if checks else "–"
        status = o.status if o.status == "ok" else f"**{o.status}**"
        md.append(f"| [{o.bench.name}](#bench{o.bench.name}py) | {status} "
                  f"| {duration(o.seconds)} | {met} |")  # fmt: skip
    md.append("")
    if all_checks:
        md += [
            "## Targets",
            "",
            "Each is a median (or a ratio of medians to a baseline measured in the same run) "
            "as the script printed it.",
            "",
            "| script | measure | value | target | |",
            "|---|---|---:|---|---|",
        ]
        for name, c in all_checks:
            verdict = ("pass" if c.passed else "**missed**") + (f" {c.note}" if c.note else "")
            label = c.label.replace("|", "\\|")
            md.append(f"| {name} | {label} | {c.value} | {c.target} | {verdict} |")
        md.append("")
    for o in outcomes:
        md += render_outcome(o)
    return "\n".join(md).rstrip() + "\n"


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


# --------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def selected(only: str | None) -> list[Bench]:
    if not only:
        return list(BENCHES)
    by_name = {b.name: b for b in BENCHES}
    names = [n.strip().removeprefix("bench/").removesuffix(".py") for n in only.split(",")]
    unknown = [n for n in names if n and n not in by_name]
    if unknown:
        raise SystemExit(
            f"run_all.py: --only: unknown benchmark(s) {', '.join(unknown)}; "
            f"choose from {', '.join(by_name)}"
        )
    return [b for b in BENCHES if b.name in names]  # in the usual order


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true",
                   help="pass --quick to every script (scale.py: --sizes 2000 --spark '')")  # fmt: skip
    p.add_argument("--only", default=None,
                   help="comma-separated scripts to run, e.g. scan,build (default: all of "
                        + ", ".join(b.name for b in BENCHES) + ")")  # fmt: skip
    p.add_argument("--runs", type=int, default=None,
                   help="timed runs per variant, passed to every script (default: theirs)")  # fmt: skip
    p.add_argument("--out", type=Path, default=DEFAULT_OUT,
                   help="cache/work dir passed to every script (default bench_out/); "
                        "the scripts' logs go to <out>/run_all/")  # fmt: skip
    p.add_argument("--results", type=Path, default=None,
                   help="the results file (default bench/RESULTS.md; --quick: "
                        "<out>/RESULTS-quick.md)")  # fmt: skip
    args = p.parse_args(argv)
    out = args.out.resolve()
    results = args.results or (out / "RESULTS-quick.md" if args.quick else DEFAULT_RESULTS)
    benches = selected(args.only)
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        *(sys.argv[1:] if argv is None else argv),
    ]
    outcomes = [
        Outcome(b, command_for(b, quick=args.quick, runs=args.runs, out=out)) for b in benches
    ]
    started = datetime.now(timezone.utc)
    host = machine()
    load_start = load_average()

    def save(finished: datetime | None) -> None:
        load = (load_start, load_average() if finished else "–")
        text = render(outcomes, command, quick=args.quick, started=started,
                      finished=finished, host=host, load=load)  # fmt: skip
        write(results, text)

    logs = out / "run_all"
    # SIGTERM / SIGHUP (make killed, terminal closed) stop the running script like Ctrl-C:
    # it runs in a session of its own, so nothing else would stop it and its JVM
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)
    try:
        for k, o in enumerate(outcomes, 1):
            print(f"\n##### run_all [{k}/{len(outcomes)}] {shown(o.command)}", flush=True)
            run(o, logs)
            print(f"##### run_all: bench/{o.bench.name}.py {o.status} after "
                  f"{duration(o.seconds)}", flush=True)  # fmt: skip
            if o.status != "ok":
                print(o.stderr_tail, file=sys.stderr, flush=True)
            save(None)
    except KeyboardInterrupt:
        save(datetime.now(timezone.utc))
        print(f"\nrun_all: interrupted; partial results in {shown([str(results)])}", flush=True)
        return 130
    save(datetime.now(timezone.utc))
    bad = [o.bench.name for o in outcomes if o.status != "ok"]
    print(f"\nrun_all: results in {shown([str(results)])}", flush=True)
    if bad:
        print(f"run_all: {len(bad)} of {len(outcomes)} failed: {', '.join(bad)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
