"""One settings schema (config/settings.toml) for both servers, the consumer, the drift report
and the tools; one model-config reader; the drift report follows the live model config.

Mutations seen failing here: a schema doc edited without regenerating (the staleness test);
the file applied after the variables in config/settings.py (precedence); an unknown
VOLSPIKE_* variable let through (errors); the native server reading its file over its
variables (the differential test); the drift report's headline back to "the artifact that
scored most rows" (both rollback tests, the Evidently one run in .venv-drift)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import pytest

from config import settings as cs
from config.model_config import parse_model_config
from config.settings_gen import SPECS
from market.features import WARMUP_MS
from server.rollback import set_artifact
from tests.conftest import NATIVE_SERVER, ROOT
from tools import gen_settings

CASES = json.loads((ROOT / "config" / "testdata" / "model_config_cases.json").read_text())
CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith("VOLSPIKE_")}
native = pytest.param(
    "native",
    marks=pytest.mark.slow,  # the binary is built by `make native` (make test), not test-fast
)


def server_cmd(impl: str) -> list[str]:
    if impl == "native":
        if not NATIVE_SERVER.exists():
            pytest.fail(f"{NATIVE_SERVER} is not built: run `make native`")
        return [str(NATIVE_SERVER)]
    return [sys.executable, "-m", "server"]


def run(impl: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*server_cmd(impl), *args],
        env={**CLEAN_ENV, **(env or {})},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_generated_settings_and_docs_are_fresh():
    """config/settings_gen.py, server/native/internal/config/settings_gen.go and docs/server.md's
    settings table are what config/settings.toml generates (`python -m tools.gen_settings`)."""
    stale = [
        str(p.relative_to(ROOT))
        for p, text in gen_settings.outputs().items()
        if p.read_text() != text
    ]
    assert not stale, f"stale: {stale}; run python -m tools.gen_settings"


def test_the_docs_table_has_every_flag_and_variable():
    doc = (ROOT / "docs" / "server.md").read_text()
    block = doc.split(gen_settings.BEGIN)[1].split(gen_settings.END)[0]
    for s in SPECS:
        flag = "(variable only)" if s.read_by == ("tools",) else f"`--{s.flag}`"
        assert f"| {flag} | `{s.env}` |" in block, s.name


def test_the_consumer_warmup_default_is_the_longest_window_plus_10_s():
    assert cs.default(next(s for s in SPECS if s.name == "warmup_ms")) == WARMUP_MS + 10_000


def test_python_flags_are_the_schema_settings():
    """The Python server's flags are exactly the schema's settings it reads (the native
    server's: test_both_servers_take_their_schema_flags)."""
    p = argparse.ArgumentParser()
    cs.add_arguments(p, "python")
    flags = {o for a in p._actions for o in a.option_strings} - {"-h", "--help"}
    want = {f"--{s.flag}" for s in cs.specs("python")} | {"--config", "--print-settings"}
    assert flags == want


def test_precedence_flag_over_variable_over_file_over_default(tmp_path):
    file = tmp_path / "s.toml"
    file.write_text(
        "port = 1\nmetrics_port = 2\nmax_rows = 3\ngrace_seconds = 4\nbootstrap = 'k'\n"
    )
    p = argparse.ArgumentParser()
    cs.add_arguments(p, "python")
    args = p.parse_args(["--config", str(file), "--port", "21"])
    env = {"VOLSPIKE_PORT": "11", "VOLSPIKE_METRICS_PORT": "12", "VOLSPIKE_CONSUMER_MAX_ROWS": "7"}
    s = cs.resolve("python", args, env)
    assert (s.port, s.metrics_port, s.max_rows, s.grace_seconds) == (21, 12, 3, 4.0)
    assert s.reload_poll_seconds == 1.0 and s.model_config == ROOT / "config" / "model.toml"
    assert s.pid_file is None


@pytest.mark.parametrize(
    ("args", "env", "file", "message"),
    [
        ((), {"VOLSPIKE_PROT": "1"}, "",
         "VOLSPIKE_PROT is not a setting (config/settings.toml); did you mean VOLSPIKE_PORT?"),
        ((), {"VOLSPIKE_PORT": "12x"}, "", 'VOLSPIKE_PORT="12x" is not an integer'),
        ((), {"VOLSPIKE_GRACE_SECONDS": "inf"}, "",
         'VOLSPIKE_GRACE_SECONDS="inf" is not a number of seconds'),
        ((), {"VOLSPIKE_MODELS_DIR": ""}, "", "VOLSPIKE_MODELS_DIR is empty; it must name a path"),
        (("--max-rows", "1e3"), {}, "", '--max-rows="1e3" is not an integer'),
        ((), {}, "prot = 1\n", "'prot' is not a setting (config/settings.toml)"),
        ((), {}, 'port = "1"\n', 'port = "1" is not an integer'),
        ((), {}, "host = 1\n", "host = 1 is not a string"),
        # out of range: the schema's min/max (the two servers once differed on a 0 max age)
        ((), {"VOLSPIKE_GRACE_SECONDS": "-1"}, "",
         'VOLSPIKE_GRACE_SECONDS="-1" is out of range: it must be from 0.0 to 3600.0'),
        ((), {"VOLSPIKE_MAX_CONNECTION_AGE_SECONDS": "0"}, "",
         'VOLSPIKE_MAX_CONNECTION_AGE_SECONDS="0" is out of range: it must be from 1.0 to 86400.0'),
        (("--port", "70000"), {}, "", '--port="70000" is out of range: it must be from 1 to 65535'),
        ((), {}, "max_rows = 0\n", 'max_rows="0" is out of range: it must be from 1 to 10000000'),
        # past int64 / float64 (Go's strconv says ErrRange; Python's numbers do not end)
        ((), {"VOLSPIKE_MAX_ROWS": "1" + "0" * 20}, "",
         f'VOLSPIKE_MAX_ROWS="1{"0" * 20}" is out of range: it must be from 1 to 10000000'),
        (("--grace-seconds", "1e400"), {}, "",
         '--grace-seconds="1e400" is out of range: it must be from 0.0 to 3600.0'),
        # a file's float spelled as Python's repr by both (Go's 'g' wrote 1e+06 and 5)
        ((), {}, "max_connection_age_seconds = 1e6\n",
         'max_connection_age_seconds="1000000.0" is out of range: it must be from 1.0 to 86400.0'),
        ((), {}, "port = 5.0\n", "port = 5.0 is not an integer"),
    ],
)  # fmt: skip
@pytest.mark.parametrize("impl", ["python", native])
def test_a_bad_setting_stops_the_server_naming_it(tmp_path, impl, args, env, file, message):
    """Both servers refuse the same unknown variable, malformed value or file key with the
    same message and exit 2, before binding anything."""
    extra = ("--config", str(tmp_path / "s.toml")) if file else ()
    (tmp_path / "s.toml").write_text(file)
    out = run(impl, *args, *extra, "--print-settings", env=env)
    assert out.returncode == 2, out.stdout + out.stderr
    assert out.stderr.startswith("settings: ") and out.stderr.rstrip().endswith(message), out.stderr


@pytest.mark.slow  # the native binary
def test_both_servers_resolve_the_same_settings(tmp_path):
    """The same flags, variables and settings file give the same effective settings on both
    servers (--print-settings), for every setting both read."""
    file = tmp_path / "s.toml"
    file.write_text(
        "port = 1\nmax_rows = 3\ngrace_seconds = 4\nreload_poll_seconds = 0.25\nworkers = 3\n"
        'models_dir = "m"\nthreads = 2\npprof = true\n'
    )
    env = {
        "VOLSPIKE_PORT": "11",
        "VOLSPIKE_METRICS_PORT": "12",
        "VOLSPIKE_GRACE_SECONDS": "5",  # over the file's 4
        "VOLSPIKE_MAX_CONNECTION_AGE_SECONDS": "1.5e1",
        "VOLSPIKE_PID_FILE": "run/x.pid",
        "VOLSPIKE_CONSUMER_MAX_ROWS": "7",  # the consumer's: known, left alone
        "VOLSPIKE_TOOLS_CACHE": "/tmp/c",
    }
    args = ("--config", str(file), "--port", "21", "--host", "0.0.0.0", "--max-message-bytes=4096")
    seen = {}
    for impl in ("python", "native"):
        out = run(impl, *args, "--print-settings", env=env)
        assert out.returncode == 0, out.stderr
        seen[impl] = json.loads(out.stdout)
    both = {s.name for s in SPECS if {"python", "native"} <= set(s.read_by)}
    py, go = ({k: v for k, v in seen[i].items() if k in both} for i in ("python", "native"))
    assert py == go
    assert py["port"] == 21 and py["metrics_port"] == 12 and py["max_rows"] == 3
    assert py["grace_seconds"] == 5
    assert py["max_connection_age_seconds"] == 15 and py["reload_poll_seconds"] == 0.25
    assert py["pid_file"] == "run/x.pid" and py["models_dir"] == "m"
    assert py["model_config"] == str(ROOT / "config" / "model.toml")
    assert (seen["python"]["workers"], seen["native"]["pprof"]) == (3, True)


@pytest.mark.slow  # the native binary
def test_both_servers_take_their_schema_flags():
    """The native server's flags (its -help) are the schema's settings it reads, so the
    generated docs table is right for it too."""
    out = run("native", "-help")
    flags = {line.split()[0] for line in out.stderr.splitlines() if line.startswith("  -")}
    want = {f"-{s.flag}" for s in cs.specs("native")} | {"-config", "-print-settings"}
    assert flags == want


@pytest.mark.parametrize("case", CASES["cases"], ids=lambda c: c["text"][:40])
def test_the_model_config_reader_gives_what_the_native_one_gives(case):
    """The same file of cases as server/native/internal/config/config_test.go
    TestModelConfigCases."""
    if "want" in case:
        cfg = parse_model_config(case["text"], "f.toml")
        assert cfg.artifact == case["want"]["artifact"]
        assert list(cfg.servable) == case["want"]["servable"]
        assert cfg.model_name == case["want"]["model_name"]
        assert dict(cfg.decision_threshold) == case["want"]["decision_threshold"]
        return
    with pytest.raises(ValueError) as err:
        parse_model_config(case["text"], "f.toml")
    if "error" in case:
        assert str(err.value) == "f.toml: " + case["error"]
    else:
        assert str(err.value).startswith("f.toml: " + case["error_starts"])


def test_the_drift_report_follows_the_live_model_config_through_a_rollback(tmp_path):
    """`make drift` reads the model config `make rollback` edits (--model-config
    $(MODEL_CONFIG)); after a rollback it headlines the artifact now served and compares it
    with that artifact's reference sample, although the one before scored most of the live
    sample. (In .venv: Evidently lives in .venv-drift; the whole report through a rollback
    is test_drift_report_end_to_end_after_a_rollback.)"""
    from drift import report

    live = tmp_path / "model.toml"
    live.write_text((ROOT / "config" / "model.toml").read_text())
    set_artifact(live, "xgb-v2")
    p = argparse.ArgumentParser()
    cs.add_arguments(p, "drift")
    settings = cs.resolve("drift", p.parse_args(["--model-config", str(live)]), CLEAN_ENV)
    rows = {"xgb-v2": 9_000, "xgb-v1": 1_000}
    served, note = report.served_artifact(settings.model_config)
    assert (served, note) == ("xgb-v2", "")
    assert report.headline(rows, ["xgb-v2", "xgb-v1"], served) == ("xgb-v2", "")
    set_artifact(live, "xgb-v1")  # what `make rollback ARTIFACT=xgb-v1` does to the file
    served, _ = report.served_artifact(settings.model_config)
    assert served == "xgb-v1"
    assert report.headline(rows, ["xgb-v2", "xgb-v1"], served) == ("xgb-v1", "")
    ref = report.reference_path(settings, served, None)
    assert ref == ROOT / "compiled_models" / "xgb-v1" / "reference.parquet"
    # too few rows of the new one yet: the headline says so and stays on the other
    main, why = report.headline({"xgb-v2": 9_000, "xgb-v1": 3}, ["xgb-v2"], served)
    assert main == "xgb-v2" and "xgb-v1, which the model config names, scored 3 rows" in why
    # a half-written config: a note, never a failed report
    live.write_text('artifact = "xgb-')
    assert report.served_artifact(live)[0] is None


@pytest.mark.slow  # Evidently's environment (.venv-drift, built by make test)
def test_drift_report_end_to_end_after_a_rollback(tmp_path):
    from tests.test_drift import DRIFT_PY, stream_sample

    if not DRIFT_PY.exists():
        pytest.fail(f"{DRIFT_PY} is missing: `make test` builds it")
    live = tmp_path / "model.toml"
    live.write_text('artifact = "xgb-v2"\n')
    sample = stream_sample(tmp_path / "s", ("xgb-v2", "crypto-v1"))  # rolled over half-way
    cmd = [str(DRIFT_PY), "-m", "drift.report", "--out", str(tmp_path / "out"), "--live",
           str(sample), "--model-config", str(live)]  # fmt: skip
    set_artifact(live, "crypto-v1")
    subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, env=CLEAN_ENV)
    summary = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert summary["artifact"] == summary["served"] == "crypto-v1"
    assert summary["drifted_share"] == summary["artifacts"]["crypto-v1"]["drifted_share"]


def test_make_rollback_finds_the_model_config_a_server_reads(tmp_path):
    """make rollback refuses to edit a file the running server does not watch; it finds that
    file by the servers' precedence, whichever server and flag spelling (the settings file
    is new: a server given its model config there was taken to read the default)."""
    from config.settings import model_config_of

    (tmp_path / "s.toml").write_text('model_config = "from-file.toml"\n')
    native, python = ["volspike-server"], ["python", "-m", "server"]
    env = {"VOLSPIKE_MODEL_CONFIG": "from-env.toml"}
    assert model_config_of([*native, "-model-config=a.toml"], env, tmp_path) == tmp_path / "a.toml"
    assert (
        model_config_of([*python, "--model-config", "a.toml"], env, tmp_path) == tmp_path / "a.toml"
    )
    assert (
        model_config_of([*native, "--config", "s.toml"], env, tmp_path)
        == tmp_path / "from-env.toml"
    )
    assert (
        model_config_of([*python, "--config", "s.toml"], {}, tmp_path)
        == tmp_path / "from-file.toml"
    )
    assert model_config_of(python, {}, tmp_path) == ROOT / "config" / "model.toml"


def test_the_consumer_reads_its_flags_and_variables():
    """The consumer's variables keep their names (VOLSPIKE_CONSUMER_*), every setting is a
    flag too, and the server's variables are known but not its own."""
    env = {
        **CLEAN_ENV,
        "VOLSPIKE_CONSUMER_TICKS_TOPIC": "t1",
        "VOLSPIKE_CONSUMER_DEADLINE_S": "1.0",
        "VOLSPIKE_METRICS_PORT": "9",  # the server's
    }
    out = subprocess.run(
        [sys.executable, "-m", "consumer", "--print-settings", "--max-rows", "50"],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    s = json.loads(out.stdout)
    assert (s["ticks_topic"], s["deadline_s"], s["max_rows"], s["metrics_port"]) == (
        "t1", 1.0, 50, 8001,
    )  # fmt: skip
    assert s["live_sample_dir"] == str(ROOT / ".run" / "live-sample")
    refused = subprocess.run(
        [sys.executable, "-m", "consumer", "--print-settings", "--max-in-flight", "0"],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert 'max-in-flight="0" is out of range: it must be from 1 to 1024' in refused.stderr
