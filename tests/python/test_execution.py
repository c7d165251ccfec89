"""Code execution through the official SDK: state, exit codes, errors, timeouts, async tasks."""

import time

import pytest
from instavm import InstaVM
from instavm.exceptions import ExecutionError


def test_python_is_the_default_and_state_persists(client):
    client.execute("counter = 41")
    client.execute("def bump():\n    global counter\n    counter += 1\n    return counter")
    result = client.execute("print(bump())")
    assert result["stdout"] == "42\n"
    assert result["output"] == result["stdout"]
    assert isinstance(result["execution_time"], float) and isinstance(result["cpu_time"], float)
    assert client.execute("print(counter)", language="python")["stdout"] == "42\n"


def test_bash_exit_codes(client):
    result = client.execute("echo out; echo err >&2; exit 7", language="bash")
    assert (result["stdout"], result["stderr"], result["exit_code"]) == ("out\n", "err\n", 7)
    assert client.execute("true", language="bash")["exit_code"] == 0
    assert client.execute("pwd", language="bash")["stdout"] == "/app\n"


def test_exceptions_are_results_not_errors(client):
    result = client.execute("raise ValueError('boom')")
    assert result["exit_code"] != 0
    assert "ValueError: boom" in result["stderr"]
    # The interpreter survives the exception.
    assert client.execute("print('still here')")["stdout"] == "still here\n"


def test_timeouts_answer_before_the_client_gives_up(client):
    client.execute("import time")
    for code, language in (("time.sleep(30)", "python"), ("sleep 30", "bash")):
        started = time.monotonic()
        # The SDK's HTTP timeout is the same 3 s: a late answer would raise here.
        result = client.execute(code, language=language, timeout=3)
        assert time.monotonic() - started < 3
        assert result["exit_code"] == 124
    assert client.execute("echo alive", language="bash")["stdout"] == "alive\n"


def test_large_output_is_not_truncated(client):
    result = client.execute("print('y' * 3_000_000, end='')")
    assert len(result["stdout"]) == 3_000_000


def test_async_tasks(client):
    task = client.execute_async("import time; time.sleep(1); print('async done')")
    assert task["task_id"]
    result = client.get_task_result(task["task_id"], poll_interval=1, timeout=60)
    assert result["stdout"] == "async done\n"
    assert result["created_at"]


def test_async_task_of_an_unknown_id_times_out(client):
    with pytest.raises(TimeoutError):
        client.get_task_result("00000000-0000-4000-8000-000000000000", poll_interval=1, timeout=2)


def test_bad_language_is_an_execution_error(client):
    with pytest.raises(ExecutionError):
        client.execute("puts 1", language="ruby")
