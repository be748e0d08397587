"""What an agent may load and read, and who may ask it (loadgen.agent.AgentConfig), and the
client's backwards-compatible constructor."""
import pytest

from loadgen.agent import AgentConfig, Forbidden, is_loopback, parse_host_port
from loadgen.client import AgentClient

TARGET = "http://server:8000"


@pytest.mark.parametrize("host", ["127.0.0.1", "127.5.6.7", "localhost", "LOCALHOST", "::1",
                                  "[::1]"])
def test_loopback_addresses(host):
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["10.0.0.1", "0.0.0.0", "example.com", "localhost.example.com",
                                  "server", "::", "", None, "128.0.0.1"])
def test_not_loopback(host):
    assert not is_loopback(host)


def test_from_env_reads_the_three_variables_and_empty_is_unset():
    c = AgentConfig.from_env({"ZL_AGENT_TOKEN": "s3cret", "ZL_AGENT_TARGET": "http://server:8000/",
                              "ZL_AGENT_REDIS": "redis:6379"})
    assert c == AgentConfig(token="s3cret", target=TARGET, redis=("redis", 6379))
    assert AgentConfig.from_env({"ZL_AGENT_TOKEN": "", "ZL_AGENT_TARGET": "",
                                 "ZL_AGENT_REDIS": ""}) == AgentConfig()
    assert AgentConfig.from_env({}) == AgentConfig()


@pytest.mark.parametrize("env, message", [
    ({"ZL_AGENT_TARGET": "server:8000"}, "ZL_AGENT_TARGET: 'server:8000' is not an http://host"),
    ({"ZL_AGENT_TARGET": "https://server:8000"}, "ZL_AGENT_TARGET"),
    ({"ZL_AGENT_TARGET": "http://server:8000/guestbook"}, "without a path"),
    ({"ZL_AGENT_REDIS": "redis:port"}, "ZL_AGENT_REDIS: 'redis:port': the port is not a number"),
    ({"ZL_AGENT_REDIS": ":6379"}, "ZL_AGENT_REDIS"),
    ({"ZL_AGENT_REDIS": "redis:70000"}, "out of range"),
])
def test_a_malformed_variable_is_named(env, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        AgentConfig.from_env(env)


@pytest.mark.parametrize("value, address", [
    ("redis:6379", ("redis", 6379)), ("Redis:6380", ("redis", 6380)), ("redis", ("redis", 6379)),
    ("[::1]:6390", ("::1", 6390)), ("127.0.0.1:1234", ("127.0.0.1", 1234))])
def test_host_port(value, address):
    assert parse_host_port(value) == address


@pytest.mark.parametrize("url", [TARGET, TARGET + "/", "http://SERVER:8000"])
def test_the_target_is_allowed(url):
    AgentConfig(target=TARGET).check_url(url)


@pytest.mark.parametrize("url", ["http://server:8001", "http://server", "http://other:8000",
                                 "http://127.0.0.1:8000", "https://server:8000",
                                 "http://server.evil:8000", "not a url"])
def test_anything_else_is_refused_naming_the_target(url):
    with pytest.raises(Forbidden) as err:
        AgentConfig(target=TARGET).check_url(url)
    assert TARGET in str(err.value) or "is not an http://host" in str(err.value)


def test_default_port_80_is_the_same_origin():
    AgentConfig(target="http://server").check_url("http://server:80")


@pytest.mark.parametrize("url", ["http://127.0.0.1:8000", "http://127.9.9.9:1", "http://localhost",
                                 "http://[::1]:8000"])
def test_without_a_target_loopback_is_allowed(url):
    AgentConfig().check_url(url)


@pytest.mark.parametrize("url", ["http://server:8000", "http://10.0.0.5:8000",
                                 "http://example.com", "http://0.0.0.0:8000"])
def test_without_a_target_anything_else_is_refused(url):
    with pytest.raises(Forbidden, match="ZL_AGENT_TARGET unset"):
        AgentConfig().check_url(url)


def test_the_configured_redis_is_the_only_one():
    c = AgentConfig(redis=("redis", 6379))
    assert c.redis_address() == ("redis", 6379)
    assert c.redis_address("redis", 6379) == ("redis", 6379)
    assert c.redis_address("REDIS") == ("redis", 6379)
    for host, port in (("other", 6379), ("redis", 6380), ("127.0.0.1", None)):
        with pytest.raises(Forbidden, match="it may read only redis:6379"):
            c.redis_address(host, port)


def test_without_a_configured_redis_only_loopback_is_read():
    c = AgentConfig()
    assert c.redis_address() == ("127.0.0.1", 6379)
    assert c.redis_address("localhost", 7000) == ("localhost", 7000)
    with pytest.raises(Forbidden, match="ZL_AGENT_REDIS unset"):
        c.redis_address("redis", 6379)


@pytest.mark.parametrize("header, ok", [
    ("Bearer s3cret", True), ("bearer s3cret", True), ("Bearer  s3cret ", True),
    ("Bearer s3cre", False), ("Bearer s3cret2", False), ("Basic s3cret", False), ("s3cret", False),
    ("", False), (None, False)])
def test_the_token(header, ok):
    assert AgentConfig(token="s3cret").authorized(header) is ok
    assert AgentConfig().authorized(header) is True  # no token: no authentication


def test_client_takes_a_token_and_keeps_its_old_positional_timeout():
    c = AgentClient("http://127.0.0.1:9100/", token="t", timeout=3)
    assert (c.url, c.token, c.timeout) == ("http://127.0.0.1:9100", "t", 3)
    old = AgentClient("http://127.0.0.1:9100", 5.0)
    assert (old.token, old.timeout) == (None, 5.0)
    assert AgentClient("http://x", token="").token is None


def test_the_test_start_delay():
    assert AgentConfig.from_env({"ZL_AGENT_TEST_START_DELAY_S": "0.75"}).test_start_delay_s == 0.75
    assert AgentConfig.from_env({"ZL_AGENT_TEST_START_DELAY_S": ""}).test_start_delay_s == 0.0
    assert AgentConfig.from_env({}).test_start_delay_s == 0.0
    for bad in ("soon", "-1", "nan", "7200"):
        with pytest.raises(ValueError, match="ZL_AGENT_TEST_START_DELAY_S"):
            AgentConfig.from_env({"ZL_AGENT_TEST_START_DELAY_S": bad})
