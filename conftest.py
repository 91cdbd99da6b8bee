import os

# Tests run with development settings unless the environment says otherwise.
os.environ.setdefault("DEBUG", "1")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/layerlens")

import importlib.util

pytest_plugins = ["tests.support.fixtures"] if importlib.util.find_spec("tests.support.fixtures") else []
