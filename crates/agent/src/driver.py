# The persistent Python interpreter of a sandbox, started by the agent with `python3 -c`.
#
# Requests arrive on fd 3 as a 4-byte little-endian length and the cell's UTF-8 source. Answers
# leave on fd 4 as a 4-byte length and ASCII "<exit code> <cpu seconds>"; the first answer,
# "ready", is sent once the interpreter is up. Code runs in one `__main__` namespace that
# survives between requests, like a notebook: the value of a final expression is printed, an
# exception prints its traceback and leaves the namespace as it was.
#
# Start-up time is the floor of a sandbox's first execution, so only modules that the
# interpreter has loaded anyway are imported here; the rest (traceback, asyncio) only when used.
def _instavm_driver():
    import _ast, _signal, os, sys, time

    ONLY_AST = 0x400  # ast.PyCF_ONLY_AST, without importing ast
    TOP_LEVEL_AWAIT = 0x2000  # ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
    CO_COROUTINE = 0x80

    req = os.fdopen(os.dup(3), "rb", buffering=0)
    resp = os.fdopen(os.dup(4), "wb", buffering=0)
    os.close(3)
    os.close(4)

    main = type(sys)("__main__")
    main.__dict__["__builtins__"] = __builtins__
    sys.modules["__main__"] = main
    namespace = main.__dict__
    sys.argv = [""]

    def send(text):
        data = text.encode()
        resp.write(len(data).to_bytes(4, "little") + data)

    def read_exact(n):
        buf = b""
        while len(buf) < n:
            chunk = req.read(n - len(buf))
            if not chunk:
                return None
            buf += chunk
        return buf

    def run_code(code):
        if code.co_flags & CO_COROUTINE:
            import asyncio

            return asyncio.run(eval(code, namespace))
        return eval(code, namespace)

    def print_exception(e, skip_driver):
        import traceback

        tb = e.__traceback__
        # Hide this driver's frames (its file name is "<string>", from -c): the traceback
        # starts in the user's code.
        while skip_driver and tb is not None and tb.tb_frame.f_code.co_filename == "<string>":
            tb = tb.tb_next
        traceback.print_exception(type(e), e, tb if skip_driver else None)

    def run(source):
        try:
            tree = compile(source, "<cell>", "exec", ONLY_AST | TOP_LEVEL_AWAIT)
        except (SyntaxError, ValueError, OverflowError) as e:
            print_exception(e, skip_driver=False)
            return 1
        last = None
        if tree.body and type(tree.body[-1]).__name__ == "Expr":
            last = _ast.Expression(body=tree.body.pop().value)
        try:
            run_code(compile(tree, "<cell>", "exec", TOP_LEVEL_AWAIT))
            if last is not None:
                value = run_code(compile(last, "<cell>", "eval", TOP_LEVEL_AWAIT))
                if value is not None:
                    namespace["_"] = value
                    print(repr(value))
            return 0
        except SystemExit as e:
            if e.code is None:
                return 0
            if isinstance(e.code, int):
                return e.code
            print(e.code, file=sys.stderr)
            return 1
        except BaseException as e:
            print_exception(e, skip_driver=True)
            return 130 if isinstance(e, KeyboardInterrupt) else 1

    _signal.signal(_signal.SIGINT, _signal.SIG_IGN)
    send("ready")
    while True:
        header = read_exact(4)
        if header is None:
            return
        body = read_exact(int.from_bytes(header, "little"))
        if body is None:
            return
        source = body.decode("utf-8", "replace")
        cpu0, kids0 = time.process_time(), os.times()
        # The agent interrupts a cell at its timeout with SIGINT; between cells an interrupt
        # that arrives late must not kill the driver.
        _signal.signal(_signal.SIGINT, _signal.default_int_handler)
        try:
            exit_code = run(source)
        except BaseException:
            # A KeyboardInterrupt landing outside the user's code.
            exit_code = 130
        _signal.signal(_signal.SIGINT, _signal.SIG_IGN)
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        kids1 = os.times()
        cpu = (time.process_time() - cpu0) + (
            kids1.children_user - kids0.children_user + kids1.children_system - kids0.children_system
        )
        send("%d %.6f" % (exit_code, cpu))


_instavm_driver()
