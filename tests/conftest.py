pytest_plugins = ["tests.fixtures.servers", "tests.fixtures.tracing", "tests.fixtures.moto", "tests.fixtures.otlp"]
