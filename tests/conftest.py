pytest_plugins = ["pytester"]  # tests/test_pytest_plugin.py runs pytest on test files it writes
