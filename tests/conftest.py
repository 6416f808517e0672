import signal

pytest_plugins = ["pytester"]  # tests/test_pytest_plugin.py runs pytest on test files it writes

# A pytest started in the background by a non-interactive shell (`cmd &`, a cron wrapper)
# inherits SIGINT ignored, and so would every kjlab it starts: the tests that interrupt a
# run with SIGINT would see it ignored and the run pass. A Python handler here is reset to
# the default in each child at exec, so the children's Python turns SIGINT into
# KeyboardInterrupt as under a terminal.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
