pytest_plugins = [
    "tests.fixtures.postgres",
    "tests.fixtures.redis",
    "tests.fixtures.devstack",
    "tests.fixtures.webhook",
    "tests.js.node",
]
