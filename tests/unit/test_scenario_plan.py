"""Scenario validation, planning, validity rules and result storage: no containers needed."""
import json
import subprocess
import sys

import pytest
import yaml

from lab.plan import plan_runs, scenario_digest
from lab.results import ResultStore
from lab.scenario import (ROOT, ScenarioError, available_scenarios, load_scenario, scenario_path,
                          validate_scenario)
from lab.validity import judge

pytestmark = pytest.mark.timeout(60)
TWO_CPUS = {0, 1}


def problems(data: dict, cpus=TWO_CPUS) -> list[str]:
    data = {"name": "t", **data}
    with pytest.raises(ScenarioError) as err:
        validate_scenario(data, "scenarios/t.yaml", host_cpus=cpus)
    assert "scenarios/t.yaml" in str(err.value)
    return err.value.problems


def test_every_shipped_scenario_is_valid():
    names = available_scenarios()
    for required in ("prefork-2500", "smoke", "article-table", "iterative-200", "forking-500",
                     "preforked-500", "threaded-500", "prethreaded-500", "poll-500", "epoll-500"):
        assert required in names
    for name in names:
        load_scenario(name, host_cpus=TWO_CPUS)


def test_unknown_key_names_the_field_and_suggests_the_fix():
    [p] = problems({"load": {"conections": 10}})
    assert p.startswith("load.conections: unknown field") and "did you mean 'connections'" in p


def test_wrong_type_names_the_field():
    [p] = problems({"load": {"connections": "many"}})
    assert p.startswith("load.connections:") and "'many'" in p


def test_unknown_architecture_lists_the_choices():
    [p] = problems({"server": {"arch": "forked"}})
    assert "server.arch" in p and "preforked" in p


def test_cpuset_the_machine_does_not_have():
    [p] = problems({"constraints": {"cpusets": {"server": "3"}}})
    assert "constraints.cpusets.server" in p and "CPU 3 does not exist" in p and "0,1" in p


def test_cpuset_syntax():
    [p] = problems({"constraints": {"cpusets": {"server": "zero"}}})
    assert "cpusets.server" in p


def test_connections_above_nofile():
    [p] = problems({"constraints": {"nofile": 4096}, "load": {"connections": 5000}})
    assert "load.connections" in p and "nofile=4096" in p and "add generators" in p
    # The same load split over two generators fits.
    validate_scenario({"name": "t", "constraints": {"nofile": 4096}, "load": {"connections": 5000},
                       "generators": 2}, "t", host_cpus=TWO_CPUS)


def test_nofile_above_the_host_limit():
    [p] = problems({"constraints": {"nofile": 50000}})
    assert "constraints.nofile" in p


def test_open_mode_without_rate():
    [p] = problems({"load": {"tool": "oha", "mode": "open"}})
    assert "load.rate" in p and "needs a rate" in p


def test_rate_in_closed_mode_and_wrk_in_open_mode():
    assert any(p.startswith("load.rate:") and "use mode: open" in p
               for p in problems({"load": {"rate": 100}}))
    assert any(p.startswith("load.mode:") and "Debian's wrk has no rate option" in p
               for p in problems({"load": {"mode": "open", "rate": 100}}))


def test_every_problem_is_reported_at_once():
    found = problems({"load": {"tool": "oha", "mode": "open"}, "constraints": {"cpusets": {"redis": "7"}}})
    assert len(found) == 2


def test_unknown_scenario_lists_what_exists():
    with pytest.raises(ScenarioError) as err:
        scenario_path("prefork-250")
    assert "prefork-2500" in str(err.value) and "Did you mean" in str(err.value)


def test_malformed_yaml_names_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("load: [unclosed\n")
    with pytest.raises(ScenarioError) as err:
        load_scenario(str(bad))
    assert "bad.yaml" in str(err.value) and "not valid YAML" in str(err.value)


def test_cli_nope_lists_scenarios_and_starts_nothing():
    out = subprocess.run([sys.executable, "-m", "lab", "scenario", "nope"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "prefork-2500" in out.stdout and "smoke" in out.stdout


def test_sweep_expands_into_the_article_matrix():
    s = load_scenario("article-table", host_cpus=TWO_CPUS)
    runs = plan_runs(s)
    assert len(runs) == 7 * 24 * 3  # three rounds, every cell once per round
    assert len({r.id for r in runs}) == len(runs)
    assert runs[0].arch == "iterative" and runs[0].connections == 20 and runs[0].repeat == 1
    assert runs[167].arch == "epoll" and runs[167].connections == 15000 and runs[167].repeat == 1
    assert runs[-1].id == "epoll-faithful-c15000-3" and runs[-1].variant == "faithful"


def test_plan_variables_carry_the_constraints():
    s = validate_scenario({"name": "t", "server": {"arch": "prethreaded", "workers": 7},
                           "constraints": {"cpusets": {"server": "0", "loadgen": "1"}, "nofile": 8000,
                                           "memory": {"server": "1g"}},
                           "repeats": 2}, "t", host_cpus=TWO_CPUS)
    runs = plan_runs(s)
    assert [r.repeat for r in runs] == [1, 2]
    v = runs[0].variables()
    assert v["ZL_ARCH"] == "prethreaded" and v["ZL_WORKERS"] == "7"
    assert v["ZL_SERVER_CPUSET"] == "0" and v["ZL_LOADGEN_CPUSET"] == "1"
    assert v["ZL_NOFILE"] == "8000" and v["ZL_SERVER_MEM"] == "1g"


def test_digest_changes_with_the_scenario():
    a = validate_scenario({"name": "t"}, "t", host_cpus=TWO_CPUS)
    b = validate_scenario({"name": "t", "load": {"connections": 21}}, "t", host_cpus=TWO_CPUS)
    assert scenario_digest(a) != scenario_digest(b)


# ------------------------------------------------------------------ validity


def test_validity_rules():
    ok = dict(mode="closed", rate=None, connections=20, requests=10_000,
              errors={"connect": 0, "read": 0, "write": 0, "timeout": 0, "non_2xx_3xx": 0},
              requests_per_sec=1000.0, generator_cpu={"lg-1": 0.3})
    assert judge(**ok) == {"trusted": True, "untrusted_reasons": [], "server_failed": False,
                           "server_reasons": [], "valid": True, "reasons": []}
    # The server did badly: a result, still trusted, marked.
    bad = judge(**(ok | {"errors": {"read": 150}}))
    assert bad["trusted"] and bad["server_failed"] and not bad["valid"]
    assert "errors: 150 for 10000 requests (1.5% > 1%)" in bad["server_reasons"][0]
    sat = judge(**(ok | {"mode": "open", "rate": 2000}))
    assert sat["trusted"] and "saturated" in sat["server_reasons"][0]
    assert judge(**(ok | {"mode": "open", "rate": 1020}))["valid"]
    assert "no request completed" in judge(**(ok | {"requests": 0}))["server_reasons"][0]
    # The measurement cannot be trusted: left out of the figures.
    gen = judge(**(ok | {"generator_cpu": {"lg-1": 0.95}}))
    assert not gen["trusted"] and not gen["server_failed"]
    assert "generator-bound: lg-1" in gen["untrusted_reasons"][0]
    skew = judge(**(ok | {"duration_s": 10, "start_skew_s": 0.25}))
    assert not skew["trusted"] and "start skew" in skew["untrusted_reasons"][0]
    assert judge(**(ok | {"duration_s": 10, "start_skew_s": 0.15}))["trusted"]  # within 0.2 s
    drift = judge(**(ok | {"steady": {"stable": False, "points": 8, "reason": "halves differ by 35%"}}))
    assert not drift["trusted"] and "halves differ by 35%" in drift["untrusted_reasons"][0]
    # A window too short to judge (a 3 s run) is not held against the run.
    assert judge(**(ok | {"steady": {"stable": False, "points": 1, "reason": "1 sample"}}))["trusted"]
    # A collapsing server drifts as it collapses: that stays its result.
    collapse = judge(**(ok | {"errors": {"timeout": 900}, "steady": {"stable": False, "points": 8}}))
    assert collapse["trusted"] and collapse["server_failed"]
    busy = judge(**(ok | {"host_health": {"busy": True, "reason": "steal 12%"}}))
    assert not busy["trusted"] and "steal 12%" in busy["untrusted_reasons"][0]


def test_count_check_allows_one_request_in_flight_per_connection():
    base = dict(mode="closed", rate=None, connections=20, requests=1000, errors={},
                requests_per_sec=100.0, generator_cpu={})
    assert judge(**base, guestbook_sent=1000, visitor_count_delta=1000)["valid"]
    assert judge(**base, guestbook_sent=1000, visitor_count_delta=980)["valid"]
    assert not judge(**base, guestbook_sent=1000, visitor_count_delta=979)["valid"]
    assert not judge(**base, guestbook_sent=1000, visitor_count_delta=1001)["valid"]
    # Requests answered with an error (a 503 without Redis) never raised the counter.
    errs = base | {"requests": 10_000, "errors": {"non_2xx_3xx": 50}}
    assert judge(**errs, guestbook_sent=1000, visitor_count_delta=930)["valid"]
    # After a warm-up, its own last requests may land in the window too.
    assert judge(**base, guestbook_sent=1000, visitor_count_delta=1020, warmed_up=True)["valid"]
    assert not judge(**base, guestbook_sent=1000, visitor_count_delta=1021, warmed_up=True)["valid"]
    # ... and those the warm-up gave up on (timed out) and sent again.
    assert judge(**base, guestbook_sent=1000, visitor_count_delta=1025, warmed_up=True,
                 warmup_errors=5)["valid"]
    assert any("count mismatch" in r for r in
               judge(**errs, guestbook_sent=1000, visitor_count_delta=929)["reasons"])


# ------------------------------------------------------------------ results


def test_results_are_atomic_resumable_and_indexed(tmp_path):
    s = validate_scenario({"name": "t", "sweep": {"connections": [10, 20]}}, "t", host_cpus=TWO_CPUS)
    runs = plan_runs(s)
    digest = scenario_digest(s)
    store = ResultStore.create(tmp_path, s.model_dump(mode="json"), digest, runs, {"engine": "compose"})
    assert yaml.safe_load((store.dir / "scenario.yaml").read_text())["name"] == "t"
    done = {"status": "complete", "requests_per_sec": 12.5, "latency_ms": {"p99": 3.0},
            "validity": {"valid": True, "reasons": []}, "errors": {"read": float("nan")}}
    store.record_run(runs[0].id, done)
    store.record_run(runs[1].id, {"status": "measuring"})
    assert json.loads((store.dir / "result.json").read_text())["status"] == "running"
    assert store.finish() == "interrupted"
    doc = json.loads((store.dir / "result.json").read_text())
    assert doc["status"] == "interrupted"
    assert [r["status"] for r in doc["runs"]] == ["complete", "interrupted"]
    assert doc["runs"][0]["errors"]["read"] is None  # NaN never reaches the JSON
    assert not list(store.dir.glob(".result.json.*"))  # no temporary file left behind
    index = (tmp_path / "index.csv").read_text().splitlines()
    assert index[0].startswith("result_dir,scenario,run_id") and len(index) == 2

    again = ResultStore.resumable(tmp_path, "t", digest)
    assert again is not None and again.dir == store.dir and again.pending() == [runs[1].id]
    assert ResultStore.resumable(tmp_path, "t", "other-digest") is None


def test_the_result_status_is_derived_from_the_runs():
    from lab.results import derive_status

    def status(*states):
        return derive_status([{"status": s} for s in states])

    assert status("complete", "complete") == "complete"
    assert status("complete", "pending") == "interrupted"  # never "complete" with runs to do
    assert status("complete", "failed") == "failed"
    assert status("failed", "interrupted") == "interrupted"
    assert status("complete", "warming_up") == "running"
    with pytest.raises(ValueError):
        status("complete", "done")


def test_a_result_killed_mid_run_is_resumed(tmp_path):
    """A controller SIGKILLed mid-run leaves status running and a run measuring: resumable."""
    s = validate_scenario({"name": "t", "sweep": {"connections": [10, 20]}}, "t", host_cpus=TWO_CPUS)
    runs = plan_runs(s)
    store = ResultStore.create(tmp_path, s.model_dump(mode="json"), scenario_digest(s), runs, {})
    store.record_run(runs[0].id, {"status": "measuring"})
    again = ResultStore.resumable(tmp_path, "t", scenario_digest(s))
    assert again is not None and again.pending() == [r.id for r in runs]


def test_durations_are_whole_seconds():
    [p] = problems({"load": {"duration_s": 1.5}})
    assert p.startswith("load.duration_s:") and "integer" in p


def test_oha_needs_a_connection_per_request_kind():
    [p] = problems({"load": {"tool": "oha", "connections": 2, "threads": 1,
                             "mix": {"guestbook_get": 1, "guestbook_post": 1, "static": 1}}})
    assert p.startswith("load.connections:") and "one connection per request kind" in p


def test_an_oha_rate_too_small_to_split_over_generators_and_kinds_is_refused():
    # 5/s over two generators is 3 + 2, and two kinds need 1/s each in every share: fits.
    validate_scenario({"name": "t", "generators": 2, "load": {
        "tool": "oha", "mode": "open", "rate": 5, "connections": 8, "threads": 1,
        "mix": {"guestbook_get": 1, "static": 1}}}, "t", host_cpus=TWO_CPUS)
    [p] = problems({"generators": 2, "load": {
        "tool": "oha", "mode": "open", "rate": 3, "connections": 8, "threads": 1,
        "mix": {"guestbook_get": 1, "guestbook_post": 1, "static": 1}}})
    assert p.startswith("load.rate:") and "per request kind" in p and "over 2 generator(s)" in p


def test_duplicate_sweep_values_are_refused_naming_the_field():
    found = problems({"sweep": {"arch": ["epoll", "poll", "epoll"], "connections": [20, 200, 20]}})
    assert any(p.startswith("sweep.arch") and "epoll" in p and "more than once" in p for p in found)
    assert any(p.startswith("sweep.connections") and "20 " in p for p in found)


@pytest.mark.parametrize("duration", [0, -5, 4000])
def test_a_duration_override_outside_the_schema_is_refused(duration):
    from lab.scenario import with_overrides

    s = validate_scenario({"name": "t"}, "t", host_cpus=TWO_CPUS)
    with pytest.raises(ScenarioError) as err:
        with_overrides(s, "scenario t", duration_s=duration)
    assert f"--duration {duration}" in str(err.value)
    assert err.value.problems[0].startswith("load.duration_s:")
    short = with_overrides(s, "scenario t", duration_s=5)
    assert short.load.duration_s == 5 and short.load.warmup_s == 1


def test_cli_refuses_a_zero_duration_before_anything_starts(tmp_path):
    out = subprocess.run([sys.executable, "-m", "lab", "scenario", "smoke", "--duration", "0",
                          "--results", str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "load.duration_s" in out.stdout and "--duration 0" in out.stdout
    assert not any(tmp_path.iterdir())


def test_swarm_reservations_never_exceed_the_cpu_sets():
    from lab.environment.swarm import SwarmEnvironment

    env = SwarmEnvironment.__new__(SwarmEnvironment)  # no Docker needed for the arithmetic
    env.variables = {"ZL_SERVER_CPUSET": "0", "ZL_REDIS_CPUSET": "0", "ZL_LOADGEN_CPUSET": "1"}
    env.generators = 2
    v = env.stack_variables()
    assert v["ZL_SERVER_CPUS"] == v["ZL_REDIS_CPUS"] == v["ZL_LOADGEN_CPUS"] == "1"
    assert v["ZL_SERVER_CPUS_RESERVED"] == v["ZL_REDIS_CPUS_RESERVED"] == "0.5"
    assert v["ZL_LOADGEN_CPUS_RESERVED"] == "0.5" and v["ZL_GENERATORS"] == "2"
