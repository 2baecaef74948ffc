"""Fixtures the check tests share: a CA with four certificates made by
openssl (valid, expiring in 5 days, expired, wrong name) and a real nginx
serving plain HTTP and one HTTPS port per certificate."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.collectors.checks.certs import Certs, make_certs
from tests.collectors.checks.nginx import Nginx, run_nginx


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def nginx(tmp_path_factory: pytest.TempPathFactory, certs: Certs) -> Iterator[Nginx]:
    with run_nginx(tmp_path_factory.mktemp("nginx"), certs) as server:
        yield server
