"""The OpenAI Agents SDK sandbox provider (`instavm[agents]`, spec/agents.md) end to end on our
server: a real `SandboxAgent` run through `Runner`, with a scripted model of ours (a `Model` that
returns a fixed sequence of tool calls: no LLM, no network). The agent runs shell commands, writes
and reads files, drives an interactive program over the PTY with `write_stdin`, serves a port that
the test fetches through its share URL, and persists its workspace; a second run hydrates it from
the snapshot and finds the files.

Versions: openai-agents 0.14.1 with openai 2.44.0 (tests/python/requirements.lock; see
docs/agents.md for why)."""

import asyncio
import json
import os
import re
import time
import urllib.request

# No trace export: the run must not try the network.
os.environ.setdefault("OPENAI_AGENTS_DISABLE_TRACING", "1")

from agents import RunConfig, Runner
from agents.items import ModelResponse
from agents.models.interface import Model
from agents.run_config import SandboxRunConfig
from agents.sandbox import SandboxAgent
from agents.sandbox.snapshot import LocalSnapshotSpec
from agents.usage import Usage
from openai.types.responses import ResponseFunctionToolCall, ResponseOutputMessage, ResponseOutputText

from instavm.integrations.openai_agents import InstaVMSandboxClient, InstaVMSandboxClientOptions


class ScriptedModel(Model):
    """Answers each model call with the next step: `(tool_name, arguments)`, a function of the
    tool outputs so far that returns one, or a final text."""

    def __init__(self, steps):
        self.steps = list(steps)
        self.outputs = []  # every tool output the agent sent back, in order
        self.calls = 0

    async def get_response(self, system_instructions, input, model_settings, tools, output_schema,
                           handoffs, tracing, *, previous_response_id=None, conversation_id=None, prompt=None):
        self.outputs = [i["output"] for i in input if isinstance(i, dict) and i.get("type") == "function_call_output"]
        step = self.steps.pop(0)
        if callable(step):
            step = step(self.outputs)
        self.calls += 1
        if isinstance(step, str):
            item = ResponseOutputMessage(
                id=f"msg_{self.calls}", type="message", role="assistant", status="completed",
                content=[ResponseOutputText(type="output_text", text=step, annotations=[])],
            )
        else:
            name, args = step
            assert name in {t.name for t in tools}, f"{name} is not among {[t.name for t in tools]}"
            item = ResponseFunctionToolCall(
                id=f"fc_{self.calls}", call_id=f"call_{self.calls}", type="function_call",
                name=name, arguments=json.dumps(args),
            )
        return ModelResponse(output=[item], usage=Usage(), response_id=None)

    def stream_response(self, *args, **kwargs):
        raise NotImplementedError("the scripted model does not stream")


def exec_command(cmd, **extra):
    return ("exec_command", {"cmd": cmd, **extra})


def body(output):
    """The command's output, without the tool's header lines."""
    return output.split("Output:\n", 1)[-1] if "Output:\n" in output else output


def agent():
    return SandboxAgent(name="Worker", instructions="Do what the script says.")


def run(coro):
    return asyncio.run(coro)


def test_agent_shell_files_pty_ports_and_snapshots(server, api_key, tmp_path):
    client = InstaVMSandboxClient(api_key=api_key, base_url=server.base_url)
    options = InstaVMSandboxClientOptions(memory_mb=512, exposed_ports=(8000,))
    timings = {}

    async def first_run():
        session = await client.create(options=options, manifest=None, snapshot=LocalSnapshotSpec(base_path=tmp_path / "snaps"))
        t = time.monotonic()
        await session.start()
        timings["sandbox_start"] = time.monotonic() - t
        model = ScriptedModel([
            exec_command("uname -s && id -u && sudo -n true && echo sudo-ok && pwd", workdir="/workspace"),
            exec_command("mkdir -p /workspace/notes && printf 'remember %s\\n' milk > /workspace/notes/list.txt && cat /workspace/notes/list.txt"),
            exec_command("exit 3"),
            # An interactive program on a real terminal: it reads a line, then answers.
            exec_command("read -r -p 'name? ' who; echo \"hello, $who\"; sleep 1", tty=True, yield_time_ms=1500),
            lambda outs: ("write_stdin", {"session_id": int(re.search(r"session ID (\d+)", outs[-1]).group(1)),
                                          "chars": "agent\n", "yield_time_ms": 2000}),
            exec_command("cd /workspace && (setsid python3 -m http.server 8000 >/dev/null 2>&1 </dev/null &) && sleep 1 && echo serving"),
            "done",
        ])
        t = time.monotonic()
        result = await Runner.run(agent(), "go", run_config=RunConfig(model=model, sandbox=SandboxRunConfig(session=session)))
        timings["tool_calls"] = time.monotonic() - t
        assert result.final_output == "done"
        outs = model.outputs
        assert body(outs[0]).split() == ["Linux", "0", "sudo-ok", "/workspace"], outs[0]
        assert "Process exited with code 0" in outs[0]
        assert body(outs[1]).strip() == "remember milk", outs[1]
        assert "Process exited with code 3" in outs[2], outs[2]
        assert "name?" in outs[3] and "Process running with session ID" in outs[3], outs[3]
        assert "hello, agent" in outs[4], outs[4]
        assert body(outs[5]).strip() == "serving", outs[5]

        # The exposed port, through its share URL (idempotent: asked twice).
        endpoint = await session.resolve_exposed_port(8000)
        again = await session.resolve_exposed_port(8000)
        assert (endpoint.host, endpoint.port) == (again.host, again.port)
        scheme = "https" if endpoint.tls else "http"
        with urllib.request.urlopen(f"{scheme}://{endpoint.host}:{endpoint.port}/notes/list.txt", timeout=30) as res:
            assert res.read() == b"remember milk\n"

        # Files through the session API (the framework's own read and write).
        await session.write("notes/big.bin", __import__("io").BytesIO(bytes(range(256)) * 1024))
        data = (await session.read("notes/big.bin")).read()
        assert data == bytes(range(256)) * 1024

        t = time.monotonic()
        blob = (await session.persist_workspace()).read()
        timings["persist"] = time.monotonic() - t
        assert blob.startswith(b"__INSTAVM_SNAPSHOT__"), blob[:80]
        await session.shutdown()
        return blob

    blob = run(first_run())

    async def second_run():
        # A fresh session, hydrated from the first one's snapshot.
        session = await client.create(options=InstaVMSandboxClientOptions(), manifest=None, snapshot=LocalSnapshotSpec(base_path=tmp_path / "snaps"))
        await session.start()
        t = time.monotonic()
        await session.hydrate_workspace(__import__("io").BytesIO(blob))
        timings["hydrate"] = time.monotonic() - t
        model = ScriptedModel([exec_command("cat /workspace/notes/list.txt && wc -c < /workspace/notes/big.bin"), "found"])
        result = await Runner.run(agent(), "again", run_config=RunConfig(model=model, sandbox=SandboxRunConfig(session=session)))
        assert result.final_output == "found"
        assert body(model.outputs[0]).split() == ["remember", "milk", "262144"], model.outputs[0]
        await session.shutdown()

    run(second_run())
    print("agents timings (s):", json.dumps({k: round(v, 3) for k, v in timings.items()}))


def test_a_run_that_owns_its_sandbox_persists_and_the_next_run_hydrates(server, api_key, tmp_path):
    """The framework's own cycle: run 1 creates the sandbox, and at its end persists the
    workspace (a native snapshot) and deletes the sandbox; run 2 resumes from run 1's state, finds
    the session gone, starts a new one and hydrates it."""
    client = InstaVMSandboxClient(api_key=api_key, base_url=server.base_url)
    snaps = LocalSnapshotSpec(base_path=tmp_path / "snaps")
    write = ScriptedModel([exec_command("echo kept-across-runs > /workspace/state.txt"), "written"])
    first = run(Runner.run(agent(), "write", run_config=RunConfig(
        model=write, sandbox=SandboxRunConfig(client=client, options=InstaVMSandboxClientOptions(), snapshot=snaps))))
    assert first.final_output == "written"
    saved = first.to_state()._sandbox
    assert saved and saved["backend_id"] == "instavm", saved
    state = client.deserialize_session_state(saved["session_state"])
    old_session = state.instavm_session_id

    read = ScriptedModel([exec_command("cat /workspace/state.txt"), "read"])
    second = run(Runner.run(agent(), "read", run_config=RunConfig(
        model=read, sandbox=SandboxRunConfig(client=client, session_state=state))))
    assert second.final_output == "read"
    assert body(read.outputs[0]).strip() == "kept-across-runs", read.outputs[0]
    new_state = client.deserialize_session_state(second.to_state()._sandbox["session_state"])
    assert new_state.instavm_session_id != old_session


def test_timeouts_are_prompt_and_big_outputs_whole(server, api_key):
    client = InstaVMSandboxClient(api_key=api_key, base_url=server.base_url)

    async def go():
        session = await client.create(options=InstaVMSandboxClientOptions(), manifest=None, snapshot=None)
        await session.start()
        # The server stops the command at its timeout and answers at once with a non-zero exit
        # code, before the client's own HTTP timeout (the same number of seconds) gives up.
        t = time.monotonic()
        result = await session.exec("sleep 30", timeout=2)
        took = time.monotonic() - t
        assert took < 4, took
        assert result.exit_code != 0
        # 24 MiB of stdout arrives whole (the tar fallback streams base64 through stdout).
        result = await session.exec("head -c 25165824 /dev/zero | tr '\\0' 'z'", timeout=120)
        assert result.exit_code == 0 and len(result.stdout) == 25165824
        await session.shutdown()

    run(go())


def test_egress_options_reach_the_session_policy(server, api_key):
    """Options that restrict egress make the integration set the session's policy right after
    create (spec/agents.md §7); the server answers it back."""
    client = InstaVMSandboxClient(api_key=api_key, base_url=server.base_url)
    options = InstaVMSandboxClientOptions(allow_internet_access=False, allowed_domains=("pypi.org",), allowed_cidrs=("198.18.0.0/16",))

    async def go():
        session = await client.create(options=options, manifest=None, snapshot=None)
        await session.start()
        from instavm import InstaVM

        sdk = InstaVM(api_key=api_key, base_url=server.base_url, auto_start_session=False)
        policy = sdk.get_session_egress(session.state.instavm_session_id)
        assert policy["allowed_domains"] == ["pypi.org"] and policy["allowed_cidrs"] == ["198.18.0.0/16"], policy
        assert (policy["allow_http"], policy["allow_https"], policy["allow_package_managers"]) == (False, False, False), policy
        await session.shutdown()

    run(go())
