"""A bounded schemathesis run against the live OpenAPI of the app (real factory and lifespan, fake encoder, tiny
bundle), in process through its ASGI interface.

Every operation of ``/openapi.json`` gets a fixed number of generated requests, schema-valid ones and schema-invalid
ones, with random path ids and with the id of a real finished batch, signed in with the first admin key, then a
few more without any key.  The run is derandomized (the same requests every time) and takes seconds.  What it
asserts, each in its own test over the one recorded run:

* no request gets a 5xx (a 500 never reaches a client for anything a client can send);
* every error is the one envelope ``{"error": {"code", "message"}}`` (429/503 with ``Retry-After``), and a route
  that needs a key answers 401 without one;
* response bodies and content types conform to the schema; the statuses are the documented ones (where that is not
  true yet the test is an ``xfail(strict=True)`` naming the defect, so the fix flips it).
"""
from __future__ import annotations

import collections
import contextlib
import csv
import io
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis")  # the dev extra; CI installs it

from hypothesis import HealthCheck, settings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.generation.hypothesis.builder import (  # noqa: E402
    HypothesisTestConfig,
    HypothesisTestMode,
    create_test,
)
from schemathesis.generation.overrides import Override  # noqa: E402
from schemathesis.python import asgi  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from voce.service.app import create_app  # noqa: E402
from voce.service.settings import Settings  # noqa: E402

#: generated requests per operation (schema-valid and schema-invalid ones) and kind of path id, after the coverage
#: phase's boundary values
EXAMPLES = 20
SEED = 13
#: ... and per operation without a key
EXAMPLES_WITHOUT_KEY = 5
CHECKS: dict[str, Callable[..., Any]] = {
    "server_error": not_a_server_error,
    "status_code": status_code_conformance,
    "content_type": content_type_conformance,
    "headers": response_headers_conformance,
    "body_schema": response_schema_conformance,
}


@dataclass
class Call:
    operation: str
    mode: str
    keyed: bool
    status: int
    headers: dict[str, str]
    body: bytes
    curl: str
    failed: dict[str, str] = field(default_factory=dict)  # check name -> first line of its failure


@dataclass
class Run:
    calls: list[Call]
    operations: list[str]

    def where(self, check: str, *, exclude: tuple[str, ...] = ()) -> list[Call]:
        return [c for c in self.calls if check in c.failed and not c.operation.startswith(exclude)]

    def summary(self, calls: list[Call], check: str) -> str:
        seen = collections.Counter((c.operation, c.status, c.failed.get(check, "")) for c in calls)
        lines = [f"{n} x {op} -> {status}: {why}" for (op, status, why), n in seen.most_common(12)]
        return "\n".join(lines + [f"e.g. {calls[0].curl[:400]}" if calls else ""])


def _survey_csv(n: int = 24) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, delimiter=";")
    w.writerow(["id", "commento", "nps", "data", "regione"])
    for i in range(n):
        w.writerow([f"r{i}", f"Consegna {'lenta' if i % 2 else 'veloce'}, staff gentile ({i})", i % 11,
                    f"2026-0{1 + i % 3}-1{i % 9}", "nord" if i % 2 else "sud"])
    return buf.getvalue().encode("utf-8")


@pytest.fixture(scope="module")
def fuzz_app(tiny_bundle_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The app over the fake encoder with small limits, serving the schemathesis client's Host ('testserver')."""
    tmp = tmp_path_factory.mktemp("fuzz")
    settings_ = Settings(
        encoder_backend="fake", encoder="fake", bundle=tiny_bundle_dir, cache_dir=tmp / "cache", data_dir=tmp / "data",
        max_documents=5, max_chars=300, max_request_bytes=20_000, max_upload_bytes=200_000, discovery=False,
        batch_chunk_rows=8, allowed_hosts=[asgi.HOST],
    )
    app = create_app(settings_)
    with asgi.get_client(app) as client:  # starts the lifespan once, as a server would
        deadline = time.time() + 60
        while client.get("/ready").status_code != 200:
            assert time.time() < deadline, "the app never became ready"
            time.sleep(0.05)
    yield app
    asgi.shutdown_lifespans()  # the workers and the retention task stop, as at a server's shutdown


@pytest.fixture(scope="module")
def api_key(fuzz_app: Any) -> str | None:
    """The key the run signs in with: the first admin key of tenant 'default' (every scope).  Set ``VOCE_AUTH``
    off in ``fuzz_app`` and return None here to fuzz an open service instead."""
    settings_: Settings = fuzz_app.state.settings
    if not settings_.auth:
        return None
    return (settings_.data_dir / "initial-admin-key").read_text("ascii").strip()


def _auth(key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"} if key else {}


@pytest.fixture(scope="module")
def finished_batch(fuzz_app: Any, api_key: str | None) -> str:
    """A real batch, analysed, so the batch routes are fuzzed past their 404."""
    with asgi.get_client(fuzz_app) as client:
        r = client.post("/v1/batches", files={"file": ("survey.csv", _survey_csv())}, headers=_auth(api_key))
        assert r.status_code == 202, r.text
        bid = str(r.json()["id"])
        deadline = time.time() + 60
        while (st := client.get(f"/v1/batches/{bid}", headers=_auth(api_key)).json())["status"] not in ("done", "failed"):
            assert time.time() < deadline, st
            time.sleep(0.05)
        assert st["status"] == "done", st
    return bid


def _fuzz(schema: Any, operation: Any, phases: list[HypothesisTestMode], n: int, auth: dict[str, str],
          path_parameters: dict[str, str] | None, calls: list[Call]) -> None:
    """One operation through schemathesis' own test builder: its coverage phase (boundary and just-past-boundary
    values of every parameter, schema-valid and not) and/or its fuzzing phase (``n`` generated requests, valid
    and invalid), with a fixed seed."""

    def one(case: Any) -> None:
        curl = case.as_curl_command(headers=auth)
        mode = str(case.meta.generation.mode) if case.meta is not None else "explicit"
        try:
            response = case.call(headers=auth, timeout=60)
        except Exception as exc:  # in process, an unhandled error is re-raised after its 500 went out
            calls.append(Call(operation.label, mode, bool(auth), 500, {}, repr(exc).encode(), curl,
                              {"server_error": f"{type(exc).__name__}: {exc}"[:200]}))
            return
        call = Call(operation.label, mode, bool(auth), response.status_code, dict(response.headers),
                    response.content, curl)
        for name, check in CHECKS.items():
            try:
                case.validate_response(response, checks=[check], headers=auth)
            except BaseException as exc:  # a schemathesis FailureGroup (a BaseExceptionGroup) or one Failure
                if not isinstance(exc, AssertionError | BaseExceptionGroup):
                    raise
                first = getattr(exc, "exceptions", [exc])[0]
                call.failed[name] = f"{type(first).__name__}: {str(first).strip().splitlines()[0][:160]}"
        calls.append(call)

    test = create_test(
        operation=operation, test_func=one,
        config=HypothesisTestConfig(
            project=schema.config, modes=phases, seed=SEED, apply_ci_profile=False,
            override=Override(path_parameters=path_parameters or {}),
            settings=settings(max_examples=n, deadline=None, database=None, suppress_health_check=list(HealthCheck)),
        ),
    )
    with contextlib.suppress(Unsatisfiable):  # an operation without parameters has no schema-invalid request
        test()


@pytest.fixture(scope="module")
def fuzz_run(fuzz_app: Any, api_key: str | None, finished_batch: str) -> Run:
    schema = schemathesis.openapi.from_asgi("/openapi.json", fuzz_app)
    calls: list[Call] = []
    operations = []
    for result in schema.get_all_operations():
        op = result.ok()
        operations.append(op.label)
        both = [HypothesisTestMode.COVERAGE, HypothesisTestMode.FUZZING]
        _fuzz(schema, op, both, EXAMPLES, _auth(api_key), None, calls)
        if "{batch_id}" in op.path and op.method.upper() != "DELETE":  # the real batch stays for the others
            _fuzz(schema, op, both, EXAMPLES, _auth(api_key), {"batch_id": finished_batch}, calls)
        if api_key is not None:
            _fuzz(schema, op, [HypothesisTestMode.FUZZING], EXAMPLES_WITHOUT_KEY, {}, None, calls)
    return Run(calls, operations)


def test_the_run_reached_every_operation(fuzz_run: Run) -> None:
    reached = {c.operation for c in fuzz_run.calls}
    assert reached == set(fuzz_run.operations)
    assert len(fuzz_run.operations) >= 15
    statuses = collections.Counter(c.status for c in fuzz_run.calls)
    assert statuses[200] and statuses[202] + statuses[201] and statuses[404] and statuses[422], statuses


def test_no_request_gets_a_server_error(fuzz_run: Run) -> None:
    errors = [c for c in fuzz_run.calls if c.status >= 500]
    assert not errors, fuzz_run.summary(errors, "server_error")


def test_every_error_is_the_envelope(fuzz_run: Run) -> None:
    import json

    bad = []
    for c in fuzz_run.calls:
        if c.status < 400:
            continue
        try:
            body = json.loads(c.body)
            ok = isinstance(body["error"]["code"], str) and isinstance(body["error"]["message"], str)
        except (ValueError, KeyError, TypeError):
            ok = False
        if c.status in (429, 503):
            ok = ok and "retry-after" in {k.lower() for k in c.headers}
        if not ok:
            c.failed["envelope"] = f"{c.status}: {c.body[:120]!r}"
            bad.append(c)
    assert not bad, fuzz_run.summary(bad, "envelope")


def test_keyed_routes_refuse_a_request_without_a_key(fuzz_run: Run) -> None:
    open_routes = ("GET /health", "GET /ready")
    anonymous = [c for c in fuzz_run.calls if not c.keyed]
    assert anonymous
    wrong = [c for c in anonymous if not c.operation.startswith(open_routes) and c.status != 401]
    assert not wrong, collections.Counter((c.operation, c.status) for c in wrong)


def test_bodies_and_content_types_conform_to_the_schema(fuzz_run: Run) -> None:
    bad = fuzz_run.where("body_schema", exclude=KEY_ROUTES) + fuzz_run.where("content_type", exclude=KEY_ROUTES)
    assert not bad, fuzz_run.summary(bad, "body_schema") + fuzz_run.summary(bad, "content_type")


def test_headers_conform_to_the_schema(fuzz_run: Run) -> None:
    bad = fuzz_run.where("headers")
    assert not bad, fuzz_run.summary(bad, "headers")


KEY_ROUTES = ("GET /v1/keys", "POST /v1/keys", "DELETE /v1/keys")


#: integers a client can put in a query string that no parameter of ours can take (64-bit SQL integers)
PAST_INT64 = ("9223372036854775808", "-9223372036854775809", "1" + "0" * 40)


def _integer_query_parameters(app: Any) -> list[tuple[str, str, str]]:
    """(method, path, name) of every integer query parameter in the app's OpenAPI."""
    found = []
    for path, ops in app.openapi()["paths"].items():
        for method, op in ops.items():
            for p in op.get("parameters", []):
                types = {p.get("schema", {}).get("type")} | {s.get("type") for s in p.get("schema", {}).get("anyOf", [])}
                if p["in"] == "query" and "integer" in types:
                    found.append((method.upper(), path, p["name"]))
    return found


def test_integers_past_64_bits_are_refused(fuzz_app: Any, api_key: str | None, finished_batch: str) -> None:
    """What the coverage phase does not try: every integer query parameter past the 64-bit range is a 4xx
    (``offset=9223372036854775808`` on ``GET /v1/batches`` was a 500)."""
    params = _integer_query_parameters(fuzz_app)
    assert params
    bad = []
    with asgi.get_client(fuzz_app) as client:
        for method, path, name in params:
            url = path.replace("{batch_id}", finished_batch).replace("{topic_id}", "0").replace("{key_id}", "x")
            for value in PAST_INT64:
                try:
                    status = client.request(method, url, params={name: value}, headers=_auth(api_key)).status_code
                except Exception as exc:  # in process, the 500's exception is re-raised
                    status = 500
                    value = f"{value} ({type(exc).__name__})"
                if status >= 500:
                    bad.append(f"{method} {path}?{name}={value} -> {status}")
    assert not bad, bad


def test_key_routes_conform_to_the_schema(fuzz_run: Run) -> None:
    bad = [c for c in fuzz_run.where("body_schema") if c.operation.startswith(KEY_ROUTES)]
    assert not bad, fuzz_run.summary(bad, "body_schema")


def test_every_status_is_documented(fuzz_run: Run) -> None:
    bad = fuzz_run.where("status_code")
    assert not bad, fuzz_run.summary(bad, "status_code")


