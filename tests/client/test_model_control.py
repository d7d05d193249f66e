"""Model control in the SDK and the `mozart models` command, against a scripted gRPC peer.

The real server's model control is tested with the server. Here a small gRPC
server on 127.0.0.1:0 implements only ListModelStatus, LoadModel and UnloadModel
of the generated `AudioClassifierServicer`, keeping a toy repository in memory,
so the tests prove what the SDK puts on the wire (names, the reload flag, the
bearer token), how it reads the answers, how FAILED_PRECONDITION and NOT_FOUND
reach the caller, and what the CLI prints and exits with.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent import futures

import grpc
import pytest

from mozart_client import (
    AsyncClient,
    Client,
    FailedPreconditionError,
    InvalidInputError,
    ModelStatus,
    NotFoundError,
    RetryPolicy,
    UnavailableError,
    VersionState,
    VersionStatus,
    cli,
    cli_models,
    cli_output,
)
from mozart_client._conversion import (
    load_model_request,
    model_status_from_proto,
    model_statuses_from_proto,
    unload_model_request,
)
from mozart_proto.v1 import audio_classifier_pb2 as pb
from mozart_proto.v1 import audio_classifier_pb2_grpc as pb_grpc

BROKEN_REASON = "graph check failed: input 'audio' is [1, 8000], the model wants [1, 16000]"
FAST_RETRY = RetryPolicy(max_attempts=3, initial_backoff_s=0.01, max_backoff_s=0.02)


def _version(version: str, state: int, reason: str = "") -> pb.VersionStatus:
    return pb.VersionStatus(version=version, state=state, reason=reason)  # type: ignore[arg-type]


class RepositoryPeer(pb_grpc.AudioClassifierServicer):
    """A toy server with three models: `tiny` (serving), `broken` (cannot load), `cold`.

    Every call is recorded with its request and metadata. In `explicit` mode
    the control calls work as the proto describes; otherwise they answer
    FAILED_PRECONDITION. The first `unavailable_first` calls of each method
    answer UNAVAILABLE, to show which calls the SDK retries.
    """

    def __init__(self, *, explicit: bool = True, unavailable_first: int = 0) -> None:
        self.explicit = explicit
        self.unavailable_first = unavailable_first
        self.calls: list[tuple[str, object, dict[str, str]]] = []
        self.attempts: Counter[str] = Counter()
        self.repository = {"tiny": ("1", "2"), "broken": ("1",), "cold": ("3",)}
        self.versions: dict[str, list[pb.VersionStatus]] = {
            "tiny": [_version("1", pb.VERSION_STATE_READY), _version("2", pb.VERSION_STATE_READY)],
            "broken": [_version("1", pb.VERSION_STATE_UNAVAILABLE, BROKEN_REASON)],
            "cold": [],
        }
        self._lock = threading.Lock()

    def _record(self, method: str, request: object, context: grpc.ServicerContext) -> None:
        with self._lock:
            metadata = {key: str(value) for key, value in context.invocation_metadata()}
            self.calls.append((method, request, metadata))
            self.attempts[method] += 1
            attempt = self.attempts[method]
        if attempt <= self.unavailable_first:
            context.abort(grpc.StatusCode.UNAVAILABLE, f"scripted: still starting ({attempt})")

    def _require_explicit(self, context: grpc.ServicerContext) -> None:
        if not self.explicit:
            context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                "model control needs model_control_mode=explicit; this server runs with none",
            )

    def _status(self, name: str) -> pb.ModelStatus:
        return pb.ModelStatus(name=name, versions=self.versions[name])

    def ListModelStatus(self, request, context) -> pb.ListModelStatusResponse:
        self._record("ListModelStatus", request, context)
        return pb.ListModelStatusResponse(models=[self._status(n) for n in self.repository])

    def LoadModel(self, request, context) -> pb.ModelStatus:
        self._record("LoadModel", request, context)
        self._require_explicit(context)
        if request.name not in self.repository:
            context.abort(grpc.StatusCode.NOT_FOUND, f"the repository has no model {request.name}")
        if request.name == "broken":
            context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"no version of broken loaded; version 1: {BROKEN_REASON}",
            )
        self.versions[request.name] = [
            _version(v, pb.VERSION_STATE_READY) for v in self.repository[request.name]
        ]
        return self._status(request.name)

    def UnloadModel(self, request, context) -> pb.ModelStatus:
        self._record("UnloadModel", request, context)
        self._require_explicit(context)
        loaded = any(v.state == pb.VERSION_STATE_READY for v in self.versions.get(request.name, []))
        if not loaded:
            context.abort(grpc.StatusCode.NOT_FOUND, f"model {request.name} is not loaded")
        self.versions[request.name] = [
            _version(v.version, pb.VERSION_STATE_UNAVAILABLE, "unloaded")
            for v in self.versions[request.name]
        ]
        return self._status(request.name)

    def methods(self) -> list[str]:
        """The methods called so far, in order."""
        return [method for method, _, _ in self.calls]


@pytest.fixture
def serve() -> Iterator[Callable[[RepositoryPeer], str]]:
    """Starts a peer on a real gRPC server on 127.0.0.1:0 and returns its address."""
    servers: list[grpc.Server] = []

    def start(peer: RepositoryPeer) -> str:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        pb_grpc.add_AudioClassifierServicer_to_server(peer, server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        servers.append(server)
        return f"127.0.0.1:{port}"

    yield start
    for server in servers:
        server.stop(grace=None)


@pytest.fixture(autouse=True)
def no_mozart_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI reads MOZART_SERVER and MOZART_TOKEN; the tests pass both explicitly."""
    for key in [key for key in os.environ if key.startswith("MOZART_")]:
        monkeypatch.delenv(key)


# --- Conversion and output, without a network -------------------------------------------


def test_conversion_keeps_versions_in_order_with_state_and_reason() -> None:
    message = pb.ModelStatus(
        name="tiny",
        versions=[
            _version("1", pb.VERSION_STATE_UNLOADING),
            _version("2", pb.VERSION_STATE_READY),
            _version("3", pb.VERSION_STATE_LOADING),
            _version("4", pb.VERSION_STATE_UNAVAILABLE, "unloaded"),
            _version("5", 42),  # a state newer than this SDK
        ],
    )
    status = model_status_from_proto(message)
    assert status == ModelStatus(
        name="tiny",
        versions=(
            VersionStatus("1", VersionState.UNLOADING),
            VersionStatus("2", VersionState.READY),
            VersionStatus("3", VersionState.LOADING),
            VersionStatus("4", VersionState.UNAVAILABLE, "unloaded"),
            VersionStatus("5", VersionState.UNSPECIFIED),
        ),
    )
    assert status.ready_versions == ("2",)
    assert status.versions[1].state == "READY"  # a StrEnum compares as its name
    with pytest.raises(dataclasses.FrozenInstanceError):
        status.versions[0].reason = "edited"  # type: ignore[misc]


def test_a_list_response_becomes_one_status_per_model() -> None:
    response = pb.ListModelStatusResponse(
        models=[pb.ModelStatus(name="a"), pb.ModelStatus(name="b", versions=[_version("1", 2)])]
    )
    statuses = model_statuses_from_proto(response)
    assert [s.name for s in statuses] == ["a", "b"]
    assert statuses[0].versions == ()
    assert statuses[1].ready_versions == ("1",)


def test_requests_carry_the_name_and_the_reload_flag() -> None:
    assert load_model_request("tiny", reload=False) == pb.LoadModelRequest(name="tiny")
    assert load_model_request("tiny", reload=True) == pb.LoadModelRequest(name="tiny", reload=True)
    assert unload_model_request("tiny") == pb.UnloadModelRequest(name="tiny")
    for empty in ("", "  "):
        with pytest.raises(InvalidInputError, match="name the model"):
            load_model_request(empty, reload=False)
        with pytest.raises(InvalidInputError, match="name the model"):
            unload_model_request(empty)


STATUSES = [
    ModelStatus(
        "tiny",
        (VersionStatus("1", VersionState.UNLOADING), VersionStatus("2", VersionState.READY)),
    ),
    ModelStatus("broken", (VersionStatus("1", VersionState.UNAVAILABLE, "bad graph:\n  line 2"),)),
    ModelStatus("cold", ()),
]


def test_the_status_table_has_one_row_per_version() -> None:
    lines = cli_output.model_status_table(STATUSES).splitlines()
    assert [line.split(maxsplit=3) for line in lines] == [
        ["MODEL", "VERSION", "STATE", "REASON"],
        ["tiny", "1", "UNLOADING"],
        ["tiny", "2", "READY"],
        ["broken", "1", "UNAVAILABLE", "bad graph: line 2"],  # one line per row
        ["cold", "-", "-"],
    ]
    # Columns line up: every state starts where its header does.
    column = lines[0].index("STATE")
    assert [line[column:].split()[0] for line in lines[1:]] == [
        "UNLOADING",
        "READY",
        "UNAVAILABLE",
        "-",
    ]


def test_the_status_json_names_the_states() -> None:
    assert json.loads(cli_output.to_json(STATUSES[:2])) == [
        {
            "name": "tiny",
            "versions": [
                {"version": "1", "state": "UNLOADING", "reason": ""},
                {"version": "2", "state": "READY", "reason": ""},
            ],
        },
        {
            "name": "broken",
            "versions": [
                {"version": "1", "state": "UNAVAILABLE", "reason": "bad graph:\n  line 2"}
            ],
        },
    ]


def test_failed_precondition_has_its_own_exit_code() -> None:
    error = FailedPreconditionError("not explicit", grpc.StatusCode.FAILED_PRECONDITION)
    assert cli.exit_code_for(error) is cli.ExitCode.FAILED_PRECONDITION
    assert int(cli.ExitCode.FAILED_PRECONDITION) == 11
    assert str(error) == "FAILED_PRECONDITION: not explicit"


# --- The SDK over a real channel ----------------------------------------------------------


def test_model_status_reads_every_model_of_the_repository(serve) -> None:
    peer = RepositoryPeer()
    with Client(serve(peer)) as client:
        statuses = client.model_status()
    assert [(s.name, s.ready_versions) for s in statuses] == [
        ("tiny", ("1", "2")),
        ("broken", ()),
        ("cold", ()),
    ]
    assert statuses[1].versions == (VersionStatus("1", VersionState.UNAVAILABLE, BROKEN_REASON),)


def test_load_reload_and_unload_send_what_was_asked(serve) -> None:
    peer = RepositoryPeer()
    with Client(serve(peer)) as client:
        loaded = client.load_model("cold")
        reloaded = client.load_model("tiny", reload=True)
        unloaded = client.unload_model("tiny")
    assert loaded == ModelStatus("cold", (VersionStatus("3", VersionState.READY),))
    assert reloaded.ready_versions == ("1", "2")
    assert unloaded.versions == (
        VersionStatus("1", VersionState.UNAVAILABLE, "unloaded"),
        VersionStatus("2", VersionState.UNAVAILABLE, "unloaded"),
    )
    assert [request for _, request, _ in peer.calls] == [
        pb.LoadModelRequest(name="cold", reload=False),
        pb.LoadModelRequest(name="tiny", reload=True),
        pb.UnloadModelRequest(name="tiny"),
    ]


def test_the_token_travels_on_every_model_control_call(serve) -> None:
    peer = RepositoryPeer()
    with Client(serve(peer), token="s3cret") as client:
        client.model_status()
        client.load_model("tiny")
        client.unload_model("tiny")
    assert peer.methods() == ["ListModelStatus", "LoadModel", "UnloadModel"]
    assert [metadata.get("authorization") for _, _, metadata in peer.calls] == ["Bearer s3cret"] * 3


def test_a_server_not_in_explicit_mode_answers_failed_precondition(serve) -> None:
    peer = RepositoryPeer(explicit=False)
    with Client(serve(peer)) as client:
        with pytest.raises(FailedPreconditionError) as load_error:
            client.load_model("tiny")
        with pytest.raises(FailedPreconditionError) as unload_error:
            client.unload_model("tiny")
        assert client.model_status()[0].ready_versions == ("1", "2")  # reading still works
    for caught in (load_error, unload_error):
        assert caught.value.code == grpc.StatusCode.FAILED_PRECONDITION
        assert "model_control_mode=explicit" in caught.value.details


def test_a_load_in_which_no_version_loads_is_failed_precondition(serve) -> None:
    with (
        Client(serve(RepositoryPeer())) as client,
        pytest.raises(FailedPreconditionError) as caught,
    ):
        client.load_model("broken")
    assert caught.value.details == f"no version of broken loaded; version 1: {BROKEN_REASON}"


def test_unknown_or_unloaded_models_are_not_found(serve) -> None:
    with Client(serve(RepositoryPeer())) as client:
        with pytest.raises(NotFoundError) as unknown:
            client.load_model("nope")
        with pytest.raises(NotFoundError) as not_loaded:
            client.unload_model("cold")
        client.unload_model("tiny")
        with pytest.raises(NotFoundError):
            client.unload_model("tiny")  # a second unload finds nothing loaded
    assert unknown.value.code == not_loaded.value.code == grpc.StatusCode.NOT_FOUND
    assert unknown.value.details == "the repository has no model nope"


def test_an_empty_name_fails_before_anything_is_sent(serve) -> None:
    peer = RepositoryPeer()
    with Client(serve(peer)) as client:
        with pytest.raises(InvalidInputError) as caught:
            client.load_model("")
        with pytest.raises(InvalidInputError):
            client.unload_model("")
    assert caught.value.code is None
    assert peer.calls == []


def test_status_is_retried_on_unavailable_but_load_and_unload_are_not(serve) -> None:
    peer = RepositoryPeer(unavailable_first=2)
    with Client(serve(peer), retry=FAST_RETRY) as client:
        assert client.model_status()[0].name == "tiny"
        with pytest.raises(UnavailableError):
            client.load_model("tiny")
        with pytest.raises(UnavailableError):
            client.unload_model("tiny")
    assert peer.attempts == {"ListModelStatus": 3, "LoadModel": 1, "UnloadModel": 1}


def test_the_async_client_does_the_same_over_its_own_channel(serve) -> None:
    peer = RepositoryPeer()
    strict = RepositoryPeer(explicit=False)
    address, strict_address = serve(peer), serve(strict)

    async def scenario() -> tuple[list[ModelStatus], ModelStatus, ModelStatus, list[str]]:
        async with AsyncClient(address, token="t0k") as client:
            statuses = await client.model_status()
            reloaded = await client.load_model("tiny", reload=True)
            unloaded = await client.unload_model("tiny")
            failures: list[str] = []
            try:
                await client.load_model("nope")
            except NotFoundError as error:
                failures.append(error.code.name if error.code else "")
            try:
                await client.load_model("")
            except InvalidInputError:
                failures.append("local")
        async with AsyncClient(strict_address) as client:
            try:
                await client.unload_model("tiny")
            except FailedPreconditionError as error:
                failures.append(error.code.name if error.code else "")
        return statuses, reloaded, unloaded, failures

    statuses, reloaded, unloaded, failures = asyncio.run(scenario())
    assert [s.name for s in statuses] == ["tiny", "broken", "cold"]
    assert reloaded.ready_versions == ("1", "2")
    assert {v.reason for v in unloaded.versions} == {"unloaded"}
    assert failures == ["NOT_FOUND", "local", "FAILED_PRECONDITION"]
    assert peer.calls[1][1] == pb.LoadModelRequest(name="tiny", reload=True)
    assert {metadata["authorization"] for _, _, metadata in peer.calls} == {"Bearer t0k"}


# --- `mozart models` ----------------------------------------------------------------------


def mozart(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Runs the client commands in this process; returns the exit code, stdout and stderr."""
    try:
        code = cli.main(list(args))
    except SystemExit as exit_:  # argparse's own usage errors
        code = int(exit_.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_models_status_prints_a_table_or_json(serve, capsys) -> None:
    address = serve(RepositoryPeer())
    code, out, err = mozart(capsys, "models", "status", "--server", address)
    assert code == 0, err
    assert [line.split()[:3] for line in out.splitlines()] == [
        ["MODEL", "VERSION", "STATE"],
        ["tiny", "1", "READY"],
        ["tiny", "2", "READY"],
        ["broken", "1", "UNAVAILABLE"],
        ["cold", "-", "-"],
    ]
    assert out.splitlines()[3].endswith(BROKEN_REASON)
    code, out, _ = mozart(capsys, "models", "--json", "status", "tiny", "--server", address)
    assert code == 0
    assert [json.loads(line) for line in out.splitlines()] == [  # JSON lines, one per model
        {
            "name": "tiny",
            "versions": [
                {"version": "1", "state": "READY", "reason": ""},
                {"version": "2", "state": "READY", "reason": ""},
            ],
        }
    ]


def test_models_load_reload_and_unload_print_the_new_status(serve, capsys) -> None:
    peer = RepositoryPeer()
    address = serve(peer)
    code, out, err = mozart(capsys, "models", "load", "cold", "--server", address, "--json")
    assert code == 0, err
    assert json.loads(out) == {
        "name": "cold",
        "versions": [{"version": "3", "state": "READY", "reason": ""}],
    }
    code, out, _ = mozart(capsys, "models", "reload", "tiny", "--server", address, "--token", "k")
    assert code == 0
    assert [line.split() for line in out.splitlines()[1:]] == [
        ["tiny", "1", "READY"],
        ["tiny", "2", "READY"],
    ]
    code, out, _ = mozart(capsys, "models", "unload", "tiny", "--server", address)
    assert code == 0
    assert [line.split() for line in out.splitlines()[1:]] == [
        ["tiny", "1", "UNAVAILABLE", "unloaded"],
        ["tiny", "2", "UNAVAILABLE", "unloaded"],
    ]
    assert [request for _, request, _ in peer.calls] == [
        pb.LoadModelRequest(name="cold"),
        pb.LoadModelRequest(name="tiny", reload=True),
        pb.UnloadModelRequest(name="tiny"),
    ]
    assert peer.calls[1][2]["authorization"] == "Bearer k"


@pytest.mark.parametrize(
    ("explicit", "args", "code", "words"),
    [
        (False, ["models", "load", "tiny"], 11, "FAILED_PRECONDITION: model control needs"),
        (False, ["models", "unload", "tiny"], 11, "FAILED_PRECONDITION"),
        (True, ["models", "load", "broken"], 11, "no version of broken loaded"),
        (True, ["models", "load", "nope"], 6, "NOT_FOUND"),
        (True, ["models", "unload", "cold"], 6, "NOT_FOUND: model cold is not loaded"),
        (True, ["models", "status", "nope"], 6, "repository has no model 'nope'"),
        (True, ["models", "reload"], 2, "needs the NAME"),
        (True, ["models", "list", "tiny"], 2, "mozart models status NAME"),
        (True, ["models", "frobnicate"], 2, "invalid choice"),
    ],
)
def test_each_failure_has_its_exit_code(serve, capsys, explicit, args, code, words) -> None:
    peer = RepositoryPeer(explicit=explicit)
    exit_code, out, err = mozart(capsys, *args, "--server", serve(peer))
    assert (exit_code, out) == (code, "")
    assert words in err
    if code == 2:
        assert peer.calls == []  # usage errors are caught before any call


def test_the_command_line_exits_with_the_code(serve) -> None:
    """As a user runs it: a separate process, its exit status and stderr."""
    address = serve(RepositoryPeer(explicit=False))
    env = {key: value for key, value in os.environ.items() if not key.startswith("MOZART_")}
    completed = subprocess.run(
        [sys.executable, "-m", "mozart_client.cli", "models", "load", "tiny", "--server", address],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )
    assert completed.returncode == 11, completed.stderr
    assert completed.stdout == ""
    assert completed.stderr.startswith("error: FAILED_PRECONDITION: model control needs")


def test_usage_problems_are_found_without_a_server() -> None:
    def problem(action: str, name: str | None = None) -> str | None:
        return cli_models.usage_problem(argparse.Namespace(action=action, name=name))

    assert problem("list") is None
    assert problem("status") is None
    assert problem("status", "tiny") is None
    assert problem("load", "tiny") is None
    assert problem("unload") == "`mozart models unload` needs the NAME of a model"
    assert problem("list", "tiny") is not None


def test_help_shows_the_deadline_unary_commands_really_use(capsys) -> None:
    """`stream` has no default deadline; that must not leak into the others' help."""
    for command, default in (("models", "(default 10)"), ("stream", "(default: none)")):
        code, out, _ = mozart(capsys, command, "--help")
        assert code == 0
        assert default in " ".join(out.split())
