"""Servers side by side in one result (sweep.server): each entry merged over `server:` and checked
as a `server:` block is, cells and environments per server, and optional servers left out when
their image is not here. No containers needed."""
import pytest

from lab.plan import cells, next_round, plan_runs, server_image, without_absent_servers
from lab.scenario import (ScenarioError, ServerSpec, load_scenario, servers, validate_scenario,
                          with_overrides)

pytestmark = pytest.mark.timeout(60)
TWO_CPUS = {0, 1}
SIDE_BY_SIDE = {"server": {"variant": "faithful", "workers": 50, "arch": "epoll"},
                "sweep": {"server": [{"variant": "faithful"}, {"variant": "lean"},
                                     {"impl": "zerohttpd", "optional": True}]}}
NGINX = {"impl": "image", "image": "zerolab/nginx", "serves": ["static"]}


def scenario(**fields):
    return validate_scenario({"name": "t", **fields}, "scenarios/t.yaml", host_cpus=TWO_CPUS)


def problems(**fields) -> list[str]:
    with pytest.raises(ScenarioError) as err:
        scenario(**fields)
    assert "scenarios/t.yaml" in str(err.value)
    return err.value.problems


def sweep(*entries, **more) -> dict:
    return {"sweep": {"server": list(entries), **more}}


# ------------------------------------------------------------------ validation


def test_an_entry_is_checked_as_a_server_block_and_named_by_its_place():
    assert problems(**sweep({}, {}, {"variant": "faithfull"})) == [
        "sweep.server[2].variant: 'faithfull' is not allowed; use 'lean' or 'faithful'"]
    [p] = problems(**sweep({"varient": "lean"}))
    assert p.startswith("sweep.server[0].varient: unknown field") and "did you mean 'variant'" in p
    [p] = problems(**sweep({"workers": 0}))
    assert p.startswith("sweep.server[0].workers:") and "greater than or equal to 1" in p
    [p] = problems(**sweep({**NGINX, "serves": ["websocket"]}), load={"mix": {"guestbook_get": 0, "static": 1}})
    assert p.startswith("sweep.server[0].serves.0: 'websocket' is not allowed")


@pytest.mark.parametrize("entry, field", [
    ({"impl": "zerohttpd", "variant": "faithful"}, "variant"),
    ({"impl": "zerohttpd", "workers": 100}, "workers"),   # refused even at its default: it says it
    ({"impl": "zerohttpd", "backlog": 10}, "backlog"),
    ({"impl": "zerohttpd", "image": "zerolab/nginx"}, "image"),
    ({"serves": ["static"]}, "serves"),
    ({**NGINX, "arch": "epoll"}, "arch"),
])
def test_a_field_its_implementation_does_not_take_is_refused(entry, field):
    found = problems(**sweep({"variant": "lean"}, entry))
    assert any(p.startswith(f"sweep.server[1].{field}: impl: {entry.get('impl', 'python')} does not take it")
               for p in found), found


def test_what_server_says_of_another_implementation_never_reaches_an_entry():
    s = scenario(**SIDE_BY_SIDE)
    faithful, lean, c = servers(s)
    assert (faithful.variant, faithful.workers, faithful.arch) == ("faithful", 50, "epoll")
    assert (lean.variant, lean.workers) == ("lean", 50)
    # The architecture is both implementations'; the Python server's options are not the C servers'.
    assert c.impl == "zerohttpd" and c.arch == "epoll" and c == ServerSpec(impl="zerohttpd", arch="epoll")


def test_the_same_server_twice_is_refused():
    assert problems(**sweep({"variant": "lean"}, {}), server={"variant": "lean"}) == [
        "sweep.server[1]: the same server as sweep.server[0]; list each server once"]
    assert problems(**sweep({"impl": "zerohttpd"}, {"impl": "zerohttpd", "optional": True})) == [
        "sweep.server[1]: the same server as sweep.server[0]; list each server once"]


def test_servers_whose_cells_would_share_ids_are_refused():
    [p] = problems(**sweep({"workers": 10}, {"workers": 20}))
    assert p.startswith("sweep.server[1]: its cells would have the ids of sweep.server[0]'s (preforked-c...)")
    # Two images of one name, too.
    found = problems(**sweep(NGINX, {**NGINX, "command": ["nginx"]}), load={"mix": {"guestbook_get": 0, "static": 1}})
    assert found[0].startswith("sweep.server[1]: its cells would have the ids of sweep.server[0]'s (nginx-c...)")
    # Another name, another architecture or another variant: cells of their own.
    scenario(**sweep({"arch": "poll"}, {"arch": "epoll"}, {"arch": "epoll", "variant": "faithful"}))


def test_rules_of_the_sweep_over_servers():
    assert problems(**sweep({}, {"impl": "zerohttpd"}, variant=["lean", "faithful"])) == [
        "sweep.variant: with sweep.server, list the variants as servers, e.g. server: "
        "[{variant: faithful}, {variant: lean}]; remove sweep.variant"]
    assert problems(**sweep({"optional": True})) == [
        "sweep.server[0].optional: the lab's own server is always there (make images builds it); "
        "only impl: zerohttpd or image can be left out; remove it"]
    assert problems(**sweep({}, {"impl": "zerohttpd", "arch": "poll"}, arch=["poll", "epoll"])) == [
        "sweep.server[1].arch: sweep.arch sweeps the architecture of every server that has one; "
        "set it in one place"]
    static = {"mix": {"guestbook_get": 0, "static": 1}}
    assert problems(**sweep(NGINX, {**NGINX, "name": "other"}, arch=["poll"]), load=static) == [
        "sweep.arch: no server in sweep.server has an architecture to sweep; remove it"]
    assert problems(**sweep({}, {"impl": "image", "serves": ["guestbook_get"]})) == [
        "sweep.server[1].image: impl: image needs the server's image, e.g. zerolab/nginx"]
    assert problems(**sweep({}, {"impl": "zerohttpd", "serves": ["static"]})) == [
        "load.mix.guestbook_get: sweep.server[1] does not serve guestbook_get (sweep.server[1].serves: "
        "static); set its weight to 0 or add it to sweep.server[1].serves"]
    assert problems(**sweep()) and problems(sweep={"server": "faithful"})


def test_server_keeps_its_own_rules_beside_a_sweep_over_servers():
    assert problems(**sweep({"impl": "python"}, {}), server={"impl": "zerohttpd", "workers": 4}) == [
        "server.workers: impl: zerohttpd does not take it: their sources fix it (100 preforked "
        "children, 100 prethreads); remove it"]


def test_a_resolved_scenario_keeps_each_entry_as_written_and_validates_again():
    s = scenario(**SIDE_BY_SIDE)
    dumped = s.model_dump(mode="json")
    assert dumped["sweep"]["server"] == SIDE_BY_SIDE["sweep"]["server"]
    again = validate_scenario(dumped, "resolved", host_cpus=TWO_CPUS)
    assert again == s and servers(again) == servers(s)
    shorter = with_overrides(s, "t", duration_s=2, repeats=1)
    assert servers(shorter) == servers(s) and shorter.load.duration_s == 2


# ------------------------------------------------------------------ plans


def test_cells_run_server_by_server_with_ids_of_their_own():
    s = scenario(server=SIDE_BY_SIDE["server"],
                 sweep={**SIDE_BY_SIDE["sweep"], "arch": ["poll", "epoll"], "connections": [20, 200]})
    assert [c.id for c in cells(s)] == [
        "poll-faithful-c20", "poll-faithful-c200", "epoll-faithful-c20", "epoll-faithful-c200",
        "poll-c20", "poll-c200", "epoll-c20", "epoll-c200",
        "zerohttpd-poll-c20", "zerohttpd-poll-c200", "zerohttpd-epoll-c20", "zerohttpd-epoll-c200"]
    params = {c.id: c.params() for c in cells(s)}
    assert {(p["impl"], p["variant"]) for p in params.values()} == {
        ("python", "faithful"), ("python", "lean"), ("zerohttpd", None)}
    assert params["zerohttpd-poll-c20"]["workers"] is None and params["poll-c20"]["workers"] == 50


def test_each_round_runs_the_python_servers_in_one_environment_then_the_c_servers():
    s = scenario(server=SIDE_BY_SIDE["server"], repeats=2, order="shuffled",
                 sweep={**SIDE_BY_SIDE["sweep"], "arch": ["poll", "epoll"], "connections": [20, 200]})
    runs = plan_runs(s)
    assert len(runs) == 24 and [r.index for r in runs] == list(range(1, 25))
    impls = [r.impl for r in runs]
    # Per round: every Python cell (faithful and lean share an environment: the variant is a
    # restart of the server), then every C one; two changes of environment per round.
    assert impls == (["python"] * 8 + ["zerohttpd"] * 4) * 2
    assert len({r.environment_key() for r in runs}) == 2
    assert len({r.environment_key() for r in runs if r.impl == "python"}) == 1
    assert {r.variables()["ZL_SERVER_IMPL"] for r in runs if r.impl == "zerohttpd"} == {"zerohttpd"}


def test_more_rounds_reach_the_cells_of_every_server():
    s = scenario(**SIDE_BY_SIDE, repeats={"min": 1, "max": 3, "ci_pct": 5})
    runs = plan_runs(s)
    entries = [{"id": r.id, "index": r.index, "params": r.params(), "status": "complete",
                "requests_per_sec": 1000.0 + 100 * r.index, "validity": {"trusted": True, "valid": True}}
               for r in runs]
    more = next_round(s, entries)
    assert [r.cell for r in more] == [r.cell for r in runs] and {r.repeat for r in more} == {2}


# ------------------------------------------------------------------ optional servers


def test_an_optional_server_without_its_image_is_left_out_with_a_note():
    s = scenario(**SIDE_BY_SIDE)
    asked = []

    def present(ref):
        asked.append(ref)
        return False

    kept, notes = without_absent_servers(s, present)
    assert asked == ["zerolab/zerohttpd:latest"]
    assert notes == ["zerohttpd cells left out: no zerolab/zerohttpd image; build it with make images "
                     "ZEROHTTPD=/path/to/built/checkout"]
    assert [r.id for r in plan_runs(kept)] == ["epoll-faithful-c20-1", "epoll-c20-1"]
    # The result keeps the scenario it ran: valid, without the server left out.
    assert validate_scenario(kept.model_dump(mode="json"), "resolved", host_cpus=TWO_CPUS) == kept
    assert without_absent_servers(s, lambda ref: True) == (s, [])


def test_only_optional_servers_are_left_out():
    plain = scenario(**sweep({}, {"impl": "zerohttpd"}))
    assert without_absent_servers(plain, lambda ref: False) == (plain, [])  # up() names the image
    single = scenario(server={"impl": "zerohttpd"})
    assert without_absent_servers(single, lambda ref: False) == (single, [])
    static = {"mix": {"guestbook_get": 0, "static": 1}}
    images = scenario(**sweep({**NGINX, "image": "lab/ceiling:2", "optional": True},
                              {**NGINX, "name": "other", "optional": True}), load=static)
    assert [server_image(x) for x in servers(images)] == ["lab/ceiling:2", "zerolab/nginx:latest"]
    kept, notes = without_absent_servers(images, lambda ref: ref == "lab/ceiling:2")
    assert notes == ["other cells left out: no zerolab/nginx image; build or pull it on this machine first"]
    with pytest.raises(ScenarioError, match="sweep.server: every server is left out"):
        without_absent_servers(images, lambda ref: False)


# ------------------------------------------------------------------ the shipped scenario


def test_the_side_by_side_scenario_is_article_quick_for_three_implementations():
    quick = load_scenario("article-quick", host_cpus=TWO_CPUS)
    s = load_scenario("article-side-by-side", host_cpus=TWO_CPUS)
    assert (s.load, s.repeats, s.order, s.constraints, s.generators) == (
        quick.load, quick.repeats, quick.order, quick.constraints, quick.generators)
    assert (s.sweep.arch, s.sweep.connections) == (quick.sweep.arch, quick.sweep.connections)
    assert [(x.impl, x.variant if x.impl == "python" else None) for x in servers(s)] == [
        ("python", "faithful"), ("python", "lean"), ("zerohttpd", None)]
    assert [e.optional for e in s.sweep.server] == [False, False, True]
    runs = plan_runs(s)
    assert len(runs) == 3 * 7 * 6 * 3
    # The faithful cells are article-quick's own, under the same ids.
    assert {r.id for r in runs if r.variant == "faithful"} == {r.id for r in plan_runs(quick)}
    kept, notes = without_absent_servers(s, lambda ref: False)
    assert len(plan_runs(kept)) == 2 * 7 * 6 * 3 and len(notes) == 1


def test_a_sweep_without_servers_dumps_as_before():
    # Results started before sweep.server resume only into a scenario of the same digest.
    dumped = scenario(sweep={"arch": ["poll"]}).model_dump(mode="json")["sweep"]
    assert dumped == {"arch": ["poll"], "variant": None, "connections": None, "rate": None}
