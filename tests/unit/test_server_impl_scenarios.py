"""Servers other than the lab's Python one: the article's C servers (impl: zerohttpd) and any
image a scenario brings (impl: image). Scenario rules, plans, compose files and verification by
request kind; no containers needed."""
import json
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml

from lab.environment.compose import ComposeEnvironment
from lab.environment.swarm import check_swarm_constraints
from lab.plan import RunPlan, cell_id, plan_runs
from lab.scenario import ROOT, ScenarioError, load_scenario, validate_scenario
from loadgen.agent import probe
from loadgen.verify import verify_server

pytestmark = pytest.mark.timeout(60)
TWO_CPUS = {0, 1}
STATIC_ONLY = {"mix": {"guestbook_get": 0, "guestbook_post": 0, "static": 1}}
NGINX = {"impl": "image", "image": "zerolab/nginx", "serves": ["static"]}


def scenario(**fields):
    return validate_scenario({"name": "t", **fields}, "scenarios/t.yaml", host_cpus=TWO_CPUS)


def problems(**fields) -> list[str]:
    with pytest.raises(ScenarioError) as err:
        scenario(**fields)
    return err.value.problems


# ------------------------------------------------------------------ the shipped ceiling


def test_the_nginx_scenario_is_static_only_on_an_image_of_the_lab():
    s = load_scenario("nginx-static", host_cpus=TWO_CPUS)
    runs = plan_runs(s)
    assert runs[0].id == "nginx-c20-1" and runs[0].arch == "nginx"
    assert runs[0].served == ("static",)
    v = runs[0].variables()
    assert v["ZL_SERVER_IMPL"] == "image" and v["ZL_SERVER_IMAGE_REF"] == "zerolab/nginx"
    assert v["ZL_SERVER_PORT"] == "8000" and v["ZL_SERVER_COMMAND"] == ""
    # Nothing of the Python server's options reaches it.
    assert not {"ZL_VARIANT", "ZL_WORKERS", "ZL_BACKLOG", "ZL_READ_TIMEOUT"} & set(v)
    # Every level in one environment: only the load changes between its runs.
    assert len({r.environment_key() for r in runs}) == 1
    # The image serves the same file as the Python servers.
    text = (ROOT / "docker" / "nginx.conf").read_text()
    assert "worker_processes 1;" in text and "keepalive_timeout 0;" in text
    assert "server/public" in (ROOT / "docker" / "build-images.sh").read_text()


# ------------------------------------------------------------------ validation


def test_an_image_server_needs_its_image_and_what_it_serves():
    found = problems(server={"impl": "image"}, load=STATIC_ONLY)
    assert any(p.startswith("server.image: impl: image needs") for p in found)
    assert any(p.startswith("server.serves: say which request kinds") for p in found)


def test_a_mix_kind_the_server_does_not_serve_is_refused_naming_the_field():
    found = problems(server=NGINX, load={"mix": {"guestbook_get": 1, "static": 1}})
    assert found == ["load.mix.guestbook_get: the server does not serve guestbook_get (server.serves: "
                     "static); set its weight to 0 or add it to server.serves"]
    # The default mix is guestbook GETs only: a static-only server must say its mix.
    assert problems(server=NGINX)[0].startswith("load.mix.guestbook_get:")


def test_a_post_needs_the_get_that_reads_it_back():
    found = problems(server={**NGINX, "serves": ["guestbook_post", "static"]}, load=STATIC_ONLY)
    assert found[0].startswith("server.serves: guestbook_post needs guestbook_get")


@pytest.mark.parametrize("fields, message", [
    ({"image": "Zerolab/Nginx"}, "server.image: write an image reference"),
    ({"image": "nginx latest"}, "server.image: write an image reference"),
    ({"name": "epoll"}, "server.name: 'epoll' names an architecture"),
    ({"name": "Big Server"}, "server.name: lowercase letters"),
    ({"image": "registry.local:5000/lab/epoll:1"}, "server.name: the image's own name 'epoll'"),
    ({"command": ""}, "server.command: an empty command"),
    ({"command": "sh -c 'unclosed"}, "server.command: cannot split it"),
    ({"ready_path": "health"}, "server.ready_path: must start with '/'"),
    ({"port": 0}, "server.port"),
    ({"serves": ["static", "static"]}, "server.serves: list each request kind once"),
    ({"serves": ["websocket"]}, "server.serves.0: 'websocket' is not allowed"),
])
def test_image_fields_are_checked(fields, message):
    found = problems(server={**NGINX, **fields}, load=STATIC_ONLY)
    assert any(p.startswith(message) for p in found), found


def test_a_command_is_a_list_or_a_string_split_as_a_shell_would():
    as_text = scenario(server={**NGINX, "command": "nginx -g 'daemon off;'"}, load=STATIC_ONLY)
    as_list = scenario(server={**NGINX, "command": ["nginx", "-g", "daemon off;"]}, load=STATIC_ONLY)
    assert as_text.server.command == as_list.server.command == ["nginx", "-g", "daemon off;"]
    [run] = plan_runs(as_text)
    assert json.loads(run.variables()["ZL_SERVER_COMMAND"]) == ["nginx", "-g", "daemon off;"]


@pytest.mark.parametrize("impl, fields, field", [
    ("python", {"port": 8080}, "server.port"),
    ("python", {"image": "zerolab/nginx"}, "server.image"),
    ("python", {"serves": ["static"]}, "server.serves"),
    ("zerohttpd", {"workers": 4}, "server.workers"),
    ("zerohttpd", {"backlog": 128}, "server.backlog"),
    ("zerohttpd", {"variant": "faithful"}, "server.variant"),
    ("zerohttpd", {"read_timeout_s": 1}, "server.read_timeout_s"),
    ("zerohttpd", {"command": ["x"]}, "server.command"),
    ("image", {"arch": "epoll"}, "server.arch"),
    ("image", {"workers": 4}, "server.workers"),
])
def test_a_field_the_implementation_does_not_take_is_refused_naming_it(impl, fields, field):
    server = {**(NGINX if impl == "image" else {}), "impl": impl, **fields}
    found = problems(server=server, load=STATIC_ONLY if impl == "image" else {})
    assert any(p.startswith(f"{field}: impl: {impl} does not take it") for p in found), found


def test_the_c_servers_may_be_held_to_fewer_kinds():
    # poll's and epoll's 404 answers never end: a scenario can hold them to the guestbook.
    s = scenario(server={"impl": "zerohttpd", "arch": "poll", "serves": ["guestbook_get", "guestbook_post"]})
    [run] = plan_runs(s)
    assert run.served == ("guestbook_get", "guestbook_post")
    assert run.params()["serves"] == ["guestbook_get", "guestbook_post"]
    [default] = plan_runs(scenario(server={"impl": "zerohttpd"}))
    assert default.served == ("guestbook_get", "guestbook_post", "static")
    assert default.params()["serves"] is None
    found = problems(server={"impl": "zerohttpd", "serves": ["guestbook_get"]},
                     load={"mix": {"guestbook_get": 1, "static": 1}})
    assert found[0].startswith("load.mix.static: the server does not serve static")


def test_sweeps_of_what_an_implementation_lacks_are_refused():
    assert problems(server=NGINX, load=STATIC_ONLY, sweep={"arch": ["poll", "epoll"]}) == [
        "sweep.arch: impl: image has no arch to sweep; remove it"]
    assert problems(server={"impl": "zerohttpd"}, sweep={"variant": ["lean", "faithful"]}) == [
        "sweep.variant: impl: zerohttpd has no variant to sweep; remove it"]


def test_a_resolved_scenario_validates_again():
    # result dirs keep the resolved scenario (every field, defaults too): it must stay valid.
    s = scenario(server={**NGINX, "command": "nginx"}, load=STATIC_ONLY)
    again = validate_scenario(s.model_dump(mode="json"), "resolved", host_cpus=TWO_CPUS)
    assert again == s


def test_swarm_refuses_another_server_with_the_reason():
    with pytest.raises(ScenarioError) as err:
        check_swarm_constraints(scenario(server={"impl": "zerohttpd"}))
    assert "server.impl: zerohttpd runs on Compose only" in str(err.value)


# ------------------------------------------------------------------ plans and results


def test_c_servers_have_cells_of_their_own_and_one_environment():
    s = scenario(server={"impl": "zerohttpd"}, sweep={"arch": ["forking", "epoll"], "connections": [20, 200]})
    runs = plan_runs(s)
    assert [r.id for r in runs] == ["zerohttpd-forking-c20-1", "zerohttpd-forking-c200-1",
                                    "zerohttpd-epoll-c20-1", "zerohttpd-epoll-c200-1"]
    assert len({r.environment_key() for r in runs}) == 1  # the architecture is a restart
    v = runs[0].variables()
    assert v["ZL_ARCH"] == "forking" and v["ZL_SERVER_IMPL"] == "zerohttpd"
    assert not {"ZL_VARIANT", "ZL_WORKERS", "ZL_BACKLOG", "ZL_READ_TIMEOUT"} & set(v)
    p = runs[0].params()
    assert p["impl"] == "zerohttpd" and p["variant"] is p["workers"] is p["backlog"] is None
    assert "image" not in p and "port" not in p
    python = plan_runs(scenario(sweep={"arch": ["forking"], "connections": [20]}))[0]
    assert python.environment_key() != runs[0].environment_key()


def test_the_python_server_keeps_its_ids_and_variables():
    [run] = plan_runs(scenario(server={"arch": "poll", "variant": "faithful"}))
    assert run.id == "poll-faithful-c20-1" and run.server_url == "http://server:8000"
    assert set(run.variables()) >= {"ZL_VARIANT", "ZL_WORKERS", "ZL_BACKLOG", "ZL_READ_TIMEOUT"}
    assert "ZL_SERVER_IMPL" not in run.variables() and run.params()["impl"] == "python"
    assert cell_id("epoll", 200, None) == "epoll-c200"
    assert cell_id("epoll", 200, None, None, "zerohttpd") == "zerohttpd-epoll-c200"


@pytest.mark.parametrize("fields", [
    {"server": {"impl": "zerohttpd", "arch": "poll"}},
    {"server": {**NGINX, "port": 8080, "ready_path": "/index.html", "command": ["nginx"]}, "load": STATIC_ONLY},
    {},
])
def test_a_run_comes_back_from_its_result_entry_unchanged(fields):
    [run] = plan_runs(scenario(**fields))
    entry = json.loads(json.dumps({"id": run.id, "index": run.index, "params": run.params()}))
    back = RunPlan.from_entry(entry)
    assert back.params() == entry["params"] and back.id == run.id
    assert back.environment_key() == run.environment_key() and back.variables() == run.variables()
    assert back.served == run.served and back.ready_url == run.ready_url


def test_an_image_server_is_reached_on_its_port():
    [run] = plan_runs(scenario(server={**NGINX, "port": 8080, "ready_path": "/health"}, load=STATIC_ONLY))
    assert run.server_url == "http://server:8080" and run.ready_url == "http://server:8080/health"
    assert run.load_spec(run.server_url)["url"] == "http://server:8080"
    assert run.variables()["ZL_SERVER_PORT"] == "8080"
    assert run.params()["port"] == 8080 and run.params()["serves"] == ["static"]


# ------------------------------------------------------------------ compose files


def test_compose_takes_the_server_file_of_its_implementation(tmp_path):
    def files(variables):
        env = ComposeEnvironment("zlunit", variables)
        return [f.relative_to(ROOT).as_posix() if f.is_relative_to(ROOT) else "generated" for f in env.files]

    base = ["docker-compose.yml", "compose/publish-agents.yml"]
    assert files({}) == base + ["compose/server-python.yml"]
    assert files({"ZL_SERVER_IMPL": "zerohttpd"}) == base + ["compose/server-zerohttpd.yml"]
    assert files({"ZL_SERVER_IMPL": "image", "ZL_SERVER_COMMAND": ""}) == base + ["compose/server-image.yml"]
    assert files({"ZL_SERVER_IMPL": "image", "ZL_SERVER_COMMAND": '["nginx"]'})[-1] == "generated"
    with pytest.raises(ValueError, match="ZL_SERVER_IMPL='java'"):
        ComposeEnvironment("zlunit", {"ZL_SERVER_IMPL": "java"})


def test_the_command_override_keeps_every_word():
    command = ["sh", "-c", "exec nginx -g 'daemon off;' # $HOME"]
    env = ComposeEnvironment("zlunit-cmd", {"ZL_SERVER_IMPL": "image", "ZL_SERVER_COMMAND": json.dumps(command)})
    env._write_command_file()
    try:
        written = yaml.safe_load(env.command_file.read_text())
        assert written["services"]["server"]["command"] == command
    finally:
        env.command_file.unlink()


def test_the_generators_may_load_the_servers_port_only():
    for name in ("docker-compose.yml", "compose/swarm-stack.yml"):
        loadgen = yaml.safe_load((ROOT / name).read_text())["services"]["loadgen"]
        assert loadgen["environment"]["ZL_AGENT_TARGET"] == "http://server:${ZL_SERVER_PORT:-8000}"


# ------------------------------------------------------------------ verification by kind


@pytest.fixture
def static_server(tmp_path):
    """A plain file server on loopback: what a static-only image serves."""
    (tmp_path / "index.html").write_text("<!DOCTYPE html><title>x</title>")
    seen = []

    class Handler(SimpleHTTPRequestHandler):
        def do_GET(self):
            seen.append(self.path)
            super().do_GET()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(tmp_path)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()
    server.server_close()


def test_verification_checks_only_the_kinds_the_server_serves(static_server):
    url, _ = static_server
    answer = verify_server(url, "/index.html", kinds=["static"])
    assert [c["name"] for c in answer["checks"]] == ["static", "not_found"]
    assert answer["passed"], answer
    # Every kind (the default) fails on it: it has no guestbook.
    everything = verify_server(url, "/index.html")
    assert not everything["passed"]
    assert [c["name"] for c in everything["checks"] if not c["passed"]] == ["guestbook_get", "guestbook_post"]
    with pytest.raises(ValueError, match="unknown request kind"):
        verify_server(url, kinds=["websocket"])


def test_the_probe_asks_for_the_ready_path(static_server):
    url, seen = static_server
    assert probe(f"{url}/index.html")["status"] == 200
    assert probe(f"{url}/nothing-here")["ok"]  # any HTTP answer means it is up
    assert seen[-2:] == ["/index.html", "/nothing-here"]
    assert probe(url)["detail"].startswith(f"GET {url}/ answered 200")
