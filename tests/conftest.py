"""Shared test settings: integration tests use the real engines and never skip in CI."""

from __future__ import annotations

import pytest

from tests.ci import running_in_ci


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Integration tests are marked by folder, so `-m "not integration"` runs only unit tests.
    for item in items:
        if "/tests/integration/" in str(item.path):
            item.add_marker(pytest.mark.integration)
    # Tests marked `teardown_last` take the shared lab down: they run after everything else.
    items.sort(key=lambda item: item.get_closest_marker("teardown_last") is not None)


@pytest.fixture(scope="session")
def in_ci() -> bool:
    """True under CI (CI=true): a missing engine must fail there, never skip."""
    return running_in_ci()
