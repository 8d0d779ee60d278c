"""The scripted model over real HTTP: what GSD's openai-completions client will read from it."""

from __future__ import annotations

import http.client
import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gsd_parallel_plugin.money import cost_to_nanos
from gsd_parallel_plugin.testing.scripted_model import (
    ModelPrices,
    ScriptedModel,
    expected_files,
    write_agent_config,
)

TASK_PROMPT = (
    '## UNIT: Execute Task T01 ("Write greeting") — Slice S01 ("Greeting file"), Milestone M001\n\n'
    "## Inlined Task Plan (authoritative local execution contract)\n\n# T01: Write greeting\n\n"
    "## Inputs\n\n- `docs/in.md`\n\n## Expected Output\n\n- `src/a.txt`\n- `./src/b.txt` (new)\n"
    "- `/etc/passwd`\n\n## Verification\n\ntest -f src/a.txt\n"
)
SLICE_PROMPT = '## UNIT: Complete Slice S01 ("Greeting file") — Milestone M001\n'
OFFERED_TOOLS = [
    {"type": "function", "function": {"name": name, "parameters": {}}}
    for name in ("write", "gsd_task_complete", "gsd_slice_complete")
]


@pytest.fixture
def model() -> Iterator[ScriptedModel]:
    with ScriptedModel() as started:
        yield started


def post(
    model: ScriptedModel, body: dict[str, Any], *, timeout: float = 10
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", model.port, timeout=timeout)
    try:
        conn.request("POST", "/v1/chat/completions", json.dumps(body), {"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def chat(model: ScriptedModel, *messages: dict[str, Any], stream: bool = True) -> dict[str, Any]:
    """One request as GSD sends it; returns the parsed answer (chunks, calls, text, usage)."""
    body = {"model": "scripted-model", "stream": stream, "messages": list(messages), "tools": OFFERED_TOOLS}
    status, headers, raw = post(model, body)
    assert status == 200, raw
    if not stream:
        return json.loads(raw)
    assert headers["Content-Type"] == "text/event-stream"
    frames = [f for f in raw.decode().split("\n\n") if f]
    assert all(f.startswith("data: ") for f in frames)
    assert frames[-1] == "data: [DONE]"
    chunks = [json.loads(f.removeprefix("data: ")) for f in frames[:-1]]
    calls = [
        call
        for chunk in chunks
        for choice in chunk["choices"]
        for call in choice["delta"].get("tool_calls", [])
    ]
    text = "".join(c["delta"].get("content") or "" for chunk in chunks for c in chunk["choices"])
    finish = [c["finish_reason"] for chunk in chunks for c in chunk["choices"] if c["finish_reason"]]
    usage = [chunk["usage"] for chunk in chunks if "usage" in chunk]
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)
    assert len(usage) == 1 and chunks[-1]["choices"] == []  # usage last, as with include_usage
    return {"chunks": chunks, "calls": calls, "text": text, "finish": finish, "usage": usage[0]}


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": [{"type": "text", "text": text}]}


def assistant() -> dict[str, Any]:
    return {"role": "assistant", "content": "..."}


def test_execute_task_writes_the_expected_files_then_completes_then_stops(model: ScriptedModel) -> None:
    first = chat(model, {"role": "system", "content": "You are pi."}, user(TASK_PROMPT))
    assert first["finish"] == ["tool_calls"]
    writes = [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in first["calls"]]
    assert [name for name, _ in writes] == ["write", "write"]
    assert [args["path"] for _, args in writes] == ["src/a.txt", "src/b.txt"]  # never /etc/passwd
    assert [c["index"] for c in first["calls"]] == [0, 1]

    second = chat(model, user(TASK_PROMPT), assistant(), {"role": "tool", "content": "ok"})
    (call,) = second["calls"]
    args = json.loads(call["function"]["arguments"])
    assert call["function"]["name"] == "gsd_task_complete"
    assert (args["milestoneId"], args["sliceId"], args["taskId"]) == ("M001", "S01", "T01")
    assert args["keyFiles"] == ["src/a.txt", "src/b.txt"]

    third = chat(model, user(TASK_PROMPT), assistant(), assistant())
    assert third["calls"] == [] and third["finish"] == ["stop"]
    assert third["text"] == "Task T01 complete."

    # A later unit prompt in the same conversation is the one that counts.
    slice_answer = chat(model, user(TASK_PROMPT), assistant(), user(SLICE_PROMPT))
    assert [c["function"]["name"] for c in slice_answer["calls"]] == ["gsd_slice_complete"]

    log = model.request_log
    assert [(e["unit"], e["id"], e["step"], e["reply"]) for e in log] == [
        ("execute-task", "M001/S01/T01", 0, "tools"),
        ("execute-task", "M001/S01/T01", 1, "tools"),
        ("execute-task", "M001/S01/T01", 2, "text"),
        ("complete-slice", "M001/S01", 0, "tools"),
    ]
    assert all(e["missing_tools"] == [] and e["mode"] == "normal" for e in log)
    assert model.requests == 4
    assert model.units() == ["execute-task M001/S01/T01", "complete-slice M001/S01"]


def test_expected_files_falls_back_when_the_prompt_names_none(model: ScriptedModel) -> None:
    prompt = '## UNIT: Execute Task T02 ("X") — Slice S03 ("Y"), Milestone M004\n\nno plan here\n'
    assert expected_files(prompt) == ()
    answer = chat(model, user(prompt))
    assert json.loads(answer["calls"][0]["function"]["arguments"])["path"] == "src/m004_s03_t02.txt"


def test_non_streaming_answers_and_unknown_conversations(model: ScriptedModel) -> None:
    answer = chat(model, user(SLICE_PROMPT), stream=False)
    message = answer["choices"][0]["message"]
    assert answer["choices"][0]["finish_reason"] == "tool_calls"
    assert message["tool_calls"][0]["function"]["name"] == "gsd_slice_complete"
    plain = chat(model, user("hello"))
    assert plain["text"] == "OK." and plain["calls"] == []


def test_billed_nanos_is_the_exact_sum_gsd_computes() -> None:
    # The float GSD itself printed for 28681 prompt tokens at $3/$15 per million (seen in a real
    # run's message_end): the mirror of calculateCost must give the very same double.
    assert ModelPrices().cost_usd(28681, 50) == 0.08679300000000001
    prices = ModelPrices(input=1.1, output=7.3, cache_read=0.3, cache_write=2.0)
    with ScriptedModel(prices=prices) as model:
        assert model.billed_nanos() == 0
        seen = 0
        for text in (TASK_PROMPT, SLICE_PROMPT, "x" * 12345, "hello"):
            usage = chat(model, user(text))["usage"]
            assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
            cost = (1.1 / 1000000) * usage["prompt_tokens"] + (7.3 / 1000000) * usage["completion_tokens"]
            seen += cost_to_nanos(cost) or 0
        assert model.billed_nanos() == seen > 0
        assert sum(e["cost_nanos"] for e in model.request_log) == seen
        model.set_mode("error500")
        assert post(model, {"stream": True, "messages": [user("x")]})[0] == 500
        assert model.billed_nanos() == seen  # an error costs nothing


@pytest.mark.parametrize("code", [500, 401, 400])
def test_error_modes_answer_that_status(model: ScriptedModel, code: int) -> None:
    chat(model, user(SLICE_PROMPT))
    model.set_mode(f"error{code}")
    status, headers, raw = post(model, {"stream": True, "messages": [user(SLICE_PROMPT)]})
    assert status == code
    assert headers["Content-Type"] == "application/json"
    assert json.loads(raw)["error"]["code"] == code
    model.set_mode("normal")
    assert chat(model, user(SLICE_PROMPT))["calls"]
    assert [e["mode"] for e in model.request_log] == ["normal", f"error{code}", "normal"]
    assert [e["tokens"] is None for e in model.request_log] == [False, True, False]
    assert model.requests == 3


def test_hang_never_answers_and_stop_still_returns_at_once() -> None:
    model = ScriptedModel().start()
    model.set_mode("hang")
    with pytest.raises((TimeoutError, socket.timeout)):
        post(model, {"stream": True, "messages": [user(SLICE_PROMPT)]}, timeout=0.5)
    assert model.requests == 0 and model.billed_nanos() == 0
    assert [e["reply"] for e in model.request_log] == ["hang"]
    started = time.monotonic()
    model.stop()
    assert time.monotonic() - started < 3


def test_delay_and_bad_settings(model: ScriptedModel) -> None:
    model.set_delay(0.3)
    started = time.monotonic()
    chat(model, user("hello"))
    assert time.monotonic() - started >= 0.3
    with pytest.raises(ValueError):
        model.set_mode("flaky")
    with pytest.raises(ValueError):
        model.set_delay(-1)


def test_binds_only_to_loopback_on_an_ephemeral_port() -> None:
    with ScriptedModel() as one, ScriptedModel() as two:
        assert one.port != two.port and one.port > 0
        assert one.base_url == f"http://127.0.0.1:{one.port}/v1"
        server = one._server
        assert server is not None and server.server_address[0] == "127.0.0.1"
        address = _non_loopback_address()
        if address is not None:  # the same port on another interface of this machine is closed
            with pytest.raises(OSError):
                socket.create_connection((address, one.port), timeout=1).close()
    with pytest.raises(RuntimeError):
        _ = ScriptedModel().base_url


def _non_loopback_address() -> str | None:
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("192.0.2.1", 9))  # UDP connect sends nothing; it only picks a route
        address = str(probe.getsockname()[0])
    except OSError:
        return None
    finally:
        probe.close()
    return None if address.startswith("127.") or address == "0.0.0.0" else address


def test_write_agent_config_makes_it_gsds_default_model(model: ScriptedModel, tmp_path: Path) -> None:
    agent = tmp_path / "gsd-home" / "agent"
    write_agent_config(agent, model, provider="p", model_id="m")
    models = json.loads((agent / "models.json").read_text())
    provider = models["providers"]["p"]
    assert provider["baseUrl"] == model.base_url and provider["api"] == "openai-completions"
    assert provider["models"][0]["id"] == "m"
    assert provider["models"][0]["cost"] == {
        "input": 3.0,
        "output": 15.0,
        "cacheRead": 0.0,
        "cacheWrite": 0.0,
    }
    assert json.loads((agent / "settings.json").read_text()) == {"defaultProvider": "p", "defaultModel": "m"}


def test_module_runs_in_the_foreground_and_prints_its_url() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "gsd_parallel_plugin.testing.scripted_model", "--delay", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith("/v1")
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/v1/models")
        assert json.loads(conn.getresponse().read())["data"][0]["id"] == "scripted-model"
        conn.close()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
