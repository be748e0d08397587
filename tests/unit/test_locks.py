"""The lock files pin every package, pulled-in ones too, with hashes, and cover their .in files.

`make lock` writes requirements.txt from requirements.in and docker/requirements-<image>.txt
from docker/requirements-<image>.in; pip installs them with --require-hashes.
"""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LOCKS = {
    ROOT / "requirements.in": ROOT / "requirements.txt",
    ROOT / "docker/requirements-server.in": ROOT / "docker/requirements-server.txt",
    ROOT / "docker/requirements-loadgen.in": ROOT / "docker/requirements-loadgen.txt",
}
IDS = [str(lock.relative_to(ROOT)) for lock in LOCKS.values()]
NAME = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)")
HASH = re.compile(r"--hash=sha256:[0-9a-f]{64}\b")


def canonical(name: str) -> str:
    """PEP 503: Jinja2, jinja2 and Jinja_2 name one package."""
    return re.sub(r"[-_.]+", "-", name).lower()


def logical_lines(path: Path) -> list[str]:
    """Requirement lines with their backslash continuations joined; comments and blanks left out."""
    lines, current = [], ""
    for raw in path.read_text().splitlines():
        line = raw.split(" #", 1)[0].rstrip() if not raw.lstrip().startswith("#") else ""
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        if current.strip():
            lines.append(current.strip())
        current = ""
    if current.strip():
        lines.append(current.strip())
    return lines


def requirement_name(line: str) -> str:
    match = NAME.match(line)
    assert match, f"not a requirement: {line!r}"
    return canonical(match.group(1))


@pytest.mark.parametrize("lock", LOCKS.values(), ids=IDS)
def test_every_requirement_is_pinned_with_a_hash(lock):
    lines = logical_lines(lock)
    assert lines, f"{lock.name} holds no requirement"
    for line in lines:
        assert not line.startswith("-"), f"{lock.name}: option line {line!r} (run make lock)"
        spec = line.split(";", 1)[0].split(" --hash", 1)[0].strip()
        assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*(\[[^\]]*\])?==[^=\s,]+", spec), \
            f"{lock.name}: {spec!r} is not pinned with =="
        assert HASH.search(line), f"{lock.name}: {spec!r} carries no --hash=sha256:"


@pytest.mark.parametrize("source,lock", LOCKS.items(), ids=IDS)
def test_lock_covers_its_in_file(source, lock):
    wanted = {requirement_name(line): line for line in logical_lines(source)}
    assert wanted, f"{source.name} names no package"
    locked = {requirement_name(line): line.split(" --hash", 1)[0].strip() for line in logical_lines(lock)}
    missing = sorted(set(wanted) - set(locked))
    assert not missing, f"{lock.name} lacks {missing} from {source.name}: run make lock"
    # A pin changed in the .in file but not locked yet.
    for name, line in wanted.items():
        pin = re.search(r"==\s*([^\s;,]+)", line)
        if pin:
            assert f"=={pin.group(1)}" in locked[name], \
                f"{source.name} pins {line!r} but {lock.name} has {locked[name]!r}: run make lock"


@pytest.mark.parametrize("image", ["server", "loadgen"])
def test_image_locks_are_for_bookworms_python(image):
    """redis-py needs async-timeout below Python 3.11.3: a lock made for a newer Python lacks it."""
    names = {requirement_name(line) for line in logical_lines(ROOT / f"docker/requirements-{image}.txt")}
    assert "async-timeout" in names
